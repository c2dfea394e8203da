import { Injectable } from '@nestjs/common';
import { Attributes, Histogram, metrics, ObservableResult } from '@opentelemetry/api';

export const INSTRUMENTATION_SCOPE = 'hybrid-image-search';

/** Buckets (seconds) from sub-millisecond palette work to minutes-long Gemini calls. */
export const SECONDS_BUCKETS = [
  0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300,
];
/** Token-count buckets (OTel GenAI semantic conventions' advice). */
export const TOKEN_BUCKETS = [1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576];

export type Outcome = 'ok' | 'error';

/**
 * Every metric instrument of the service, in one place, with bounded attributes only
 * (never ids, prompts or other user input). Instruments come from the global MeterProvider,
 * so this class must be constructed after `startTelemetry()` (Nest DI runs after it in main.ts);
 * with telemetry off they are no-ops that cost nothing.
 */
@Injectable()
export class AppMetrics {
  private readonly meter = metrics.getMeter(INSTRUMENTATION_SCOPE);

  private readonly stageDuration = this.histogram('pipeline.stage.duration', 's', 'Duration of one pipeline stage');
  private readonly genAiDuration = this.histogram('gen_ai.client.operation.duration', 's', 'GenAI operation duration');
  private readonly genAiTokens = this.meter.createHistogram('gen_ai.client.token.usage', {
    unit: '{token}',
    description: 'Number of input and output tokens used',
    advice: { explicitBucketBoundaries: TOKEN_BUCKETS },
  });
  private readonly semaphoreWait = this.histogram('gemini.semaphore.wait.duration', 's', 'Time a Gemini call waited for a semaphore slot');
  private readonly quotaWait = this.histogram(
    'gemini.quota.wait.duration',
    's',
    'Time each Gemini request waited for the per-minute rate or a 429 pause, 0 when it did not wait (global with REDIS_URL)',
  );
  private readonly quotaPauses = this.meter.createCounter('gemini.quota.pauses', {
    unit: '{pause}',
    description: 'Gemini 429 answers seen by this instance; each pauses the quota (every instance with REDIS_URL)',
  });
  private readonly jobTakeovers = this.meter.createCounter('pipeline.jobs.takeovers', {
    unit: '{job}',
    description: 'Image jobs taken over from a worker that stopped renewing its lock (a killed or stalled instance)',
  });
  private readonly overloadRefusals = this.meter.createCounter('overload.refusals', {
    unit: '{request}',
    description: 'New work refused with 503 OVERLOADED while the instance was saturated',
  });
  private readonly storageDuration = this.histogram('storage.operation.duration', 's', 'Duration of one storage (S3 or local) operation');
  private readonly paletteTask = this.histogram('palette.task.duration', 's', 'Duration of one palette task in the worker pool (queue wait included)');
  private readonly generations = this.meter.createCounter('pipeline.generations', {
    unit: '{generation}',
    description: 'Generations that reached a final status',
  });

  private readonly searchDuration = this.histogram('search.duration', 's', 'Duration of one search (GET /api/v1/search), by mode');
  private readonly searchCandidates = this.meter.createHistogram('search.candidates', {
    unit: '{item}',
    description: 'Items one search ranked exactly (text and colour candidates together)',
    advice: { explicitBucketBoundaries: [0, 10, 50, 100, 250, 500, 1000, 2500, 5000] },
  });
  private readonly referenceStage = this.histogram('reference.stage.duration', 's', 'Duration of one stage of a reference upload or delete');

  constructor() {
    // Counters of rare events start at 0: a counter nobody added to is not exported at all, and a
    // dashboard or alert could not tell "none yet" from "this instance is not reporting".
    this.quotaPauses.add(0);
    this.jobTakeovers.add(0);
  }

  private histogram(name: string, unit: string, description: string): Histogram {
    return this.meter.createHistogram(name, { unit, description, advice: { explicitBucketBoundaries: SECONDS_BUCKETS } });
  }

  recordStage(stage: string, outcome: Outcome, seconds: number): void {
    this.stageDuration.record(seconds, { stage, outcome });
  }

  /** `errorType` follows the `error.type` convention: a low-cardinality code, absent on success. */
  recordGenAiOperation(model: string, seconds: number, errorType?: string): void {
    const attrs: Attributes = {
      'gen_ai.operation.name': 'generate_content',
      'gen_ai.provider.name': 'gcp.gemini',
      'gen_ai.request.model': model,
    };
    if (errorType) attrs['error.type'] = errorType;
    this.genAiDuration.record(seconds, attrs);
  }

  recordTokenUsage(model: string, type: 'input' | 'output', tokens: number): void {
    this.genAiTokens.record(tokens, {
      'gen_ai.operation.name': 'generate_content',
      'gen_ai.provider.name': 'gcp.gemini',
      'gen_ai.request.model': model,
      'gen_ai.token.type': type,
    });
  }

  recordSemaphoreWait(seconds: number): void {
    this.semaphoreWait.record(seconds);
  }

  recordOverloadRefusal(work: 'generation' | 'upload'): void {
    this.overloadRefusals.add(1, { work });
  }

  recordJobTakeover(): void {
    this.jobTakeovers.add(1);
  }

  recordQuotaWait(seconds: number): void {
    this.quotaWait.record(seconds);
  }

  recordQuotaPause(): void {
    this.quotaPauses.add(1);
  }

  recordStorageOperation(driver: 's3' | 'local', operation: string, outcome: Outcome, seconds: number): void {
    this.storageDuration.record(seconds, { driver, operation, outcome });
  }

  recordPaletteTask(outcome: Outcome, seconds: number): void {
    this.paletteTask.record(seconds, { outcome });
  }

  /** `mode`: text, color, similar or hybrid. */
  recordSearch(mode: string, outcome: Outcome, seconds: number, candidates: number): void {
    this.searchDuration.record(seconds, { 'search.mode': mode, outcome });
    if (outcome === 'ok') this.searchCandidates.record(candidates, { 'search.mode': mode });
  }

  /** `stage`: palette, store, record (upload) or delete. */
  recordReferenceStage(stage: string, outcome: Outcome, seconds: number): void {
    this.referenceStage.record(seconds, { stage, outcome });
  }

  recordGenerationFinished(status: string, errorCode?: string): void {
    this.generations.add(1, errorCode ? { status, 'error.code': errorCode } : { status });
  }

  /**
   * An observable gauge read at each collection (queue depth, pool size…). Give count-like
   * gauges an annotation unit such as `{generation}`: OTLP backends turn unit `1` into a
   * `_ratio` suffix, which is right only for 0..1 shares.
   */
  gauge(name: string, description: string, read: () => number, unit = ''): void {
    this.meter
      .createObservableGauge(name, { description, unit })
      .addCallback((result: ObservableResult) => result.observe(read()));
  }

  /**
   * A gauge whose value must be fetched (a count in Redis): read at each collection, and waited for
   * up to `timeoutMs`, so a scrape never hangs on a backend that does not answer. When the read fails
   * or is late, the last value read is reported again (nothing until a first read succeeded).
   */
  gaugeAsync(name: string, description: string, read: () => Promise<number>, unit = '', timeoutMs = ASYNC_GAUGE_TIMEOUT_MS): void {
    let last: number | undefined;
    this.meter.createObservableGauge(name, { description, unit }).addCallback(async (result: ObservableResult) => {
      const value = await withTimeout(read(), timeoutMs).catch(() => undefined);
      if (value !== undefined) last = value;
      if (last !== undefined) result.observe(last);
    });
  }
}

/** How long a collection waits for one `gaugeAsync` read. */
export const ASYNC_GAUGE_TIMEOUT_MS = 500;

function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  promise.catch(() => undefined);
  return Promise.race([
    promise,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}
