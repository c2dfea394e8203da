import { Attributes } from '@opentelemetry/api';
import { AppMetrics } from './app-metrics';
import { withSpan } from './tracing';

export type PipelineStageName = 'queue' | 'gemini' | 'upload' | 'palette';

/**
 * Runs one pipeline stage inside a child span `pipeline.<stage>` and records its duration in the
 * `pipeline.stage.duration` histogram with `stage` and `outcome` (ok|error). Returns the result
 * and the measured milliseconds, so the caller can put them into the generation's timings.
 */
export async function runStage<T>(
  metrics: AppMetrics,
  stage: PipelineStageName,
  attributes: Attributes,
  fn: () => Promise<T>,
  /** When the measured work really began (`performance.now()`), if later than the call — e.g. after a semaphore wait. */
  measuredFrom?: () => number,
): Promise<{ result: T; ms: number }> {
  const called = performance.now();
  const elapsed = () => performance.now() - Math.max(called, measuredFrom?.() ?? called);
  let outcome: 'ok' | 'error' = 'error';
  try {
    const result = await withSpan(`pipeline.${stage}`, { 'pipeline.stage': stage, ...attributes }, () => fn());
    outcome = 'ok';
    return { result, ms: elapsed() };
  } finally {
    metrics.recordStage(stage, outcome, elapsed() / 1000);
  }
}
