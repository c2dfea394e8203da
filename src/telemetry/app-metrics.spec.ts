import { Histogram } from '@opentelemetry/sdk-metrics';
import { AppMetrics, SECONDS_BUCKETS } from './app-metrics';
import { installTestTelemetry, TestTelemetry } from './testing';

describe('AppMetrics', () => {
  let telemetry: TestTelemetry;
  let metrics: AppMetrics;

  beforeEach(() => {
    telemetry = installTestTelemetry();
    metrics = new AppMetrics();
  });
  afterEach(() => telemetry.uninstall());

  it('records stage durations in seconds buckets that separate milliseconds from minutes', async () => {
    metrics.recordStage('palette', 'ok', 0.018);
    metrics.recordStage('gemini', 'error', 95);

    const stage = await telemetry.metric('pipeline.stage.duration');
    expect(stage?.descriptor.unit).toBe('s');
    const byStage = new Map(stage!.dataPoints.map((p) => [p.attributes.stage, p]));
    expect(byStage.get('palette')?.attributes).toEqual({ stage: 'palette', outcome: 'ok' });
    expect(byStage.get('gemini')?.attributes).toEqual({ stage: 'gemini', outcome: 'error' });
    const palette = byStage.get('palette')!.value as Histogram;
    expect(palette.buckets.boundaries).toEqual(SECONDS_BUCKETS);
    // 18 ms falls in (0.01, 0.025]: the bucket boundaries really resolve palette work.
    expect(palette.buckets.counts[SECONDS_BUCKETS.indexOf(0.025)]).toBe(1);
    const gemini = byStage.get('gemini')!.value as Histogram;
    expect(gemini.buckets.counts[SECONDS_BUCKETS.indexOf(120)]).toBe(1);
  });

  it('follows the GenAI semantic conventions for operation duration and token usage', async () => {
    metrics.recordGenAiOperation('gemini-2.5-flash-image', 3.2);
    metrics.recordGenAiOperation('gemini-2.5-flash-image', 120, 'GEMINI_TIMEOUT');
    metrics.recordTokenUsage('gemini-2.5-flash-image', 'input', 12);
    metrics.recordTokenUsage('gemini-2.5-flash-image', 'output', 1290);

    const duration = await telemetry.points('gen_ai.client.operation.duration');
    expect(duration.map((p) => p.attributes)).toEqual(
      expect.arrayContaining([
        {
          'gen_ai.operation.name': 'generate_content',
          'gen_ai.provider.name': 'gcp.gemini',
          'gen_ai.request.model': 'gemini-2.5-flash-image',
        },
        expect.objectContaining({ 'error.type': 'GEMINI_TIMEOUT' }),
      ]),
    );
    const tokens = await telemetry.points('gen_ai.client.token.usage');
    const byType = Object.fromEntries(tokens.map((p) => [p.attributes['gen_ai.token.type'], (p.value as Histogram).sum]));
    expect(byType).toEqual({ input: 12, output: 1290 });
  });

  it('reads gauges at collection time', async () => {
    let depth = 1;
    metrics.gauge('pipeline.queue.depth', 'waiting', () => depth, '{generation}');
    expect((await telemetry.points('pipeline.queue.depth'))[0].value).toBe(1);
    depth = 7;
    expect((await telemetry.points('pipeline.queue.depth'))[0].value).toBe(7);
    // Count-like gauges must not default to unit "1": OTLP backends would name them `…_ratio`.
    metrics.gauge('gemini.semaphore.waiting', 'waiting', () => 0);
    expect((await telemetry.metric('gemini.semaphore.waiting'))?.descriptor.unit).toBe('');
  });

  it('counts finished generations by status and error code only', async () => {
    metrics.recordGenerationFinished('succeeded');
    metrics.recordGenerationFinished('failed', 'GEMINI_ERROR');
    metrics.recordGenerationFinished('failed', 'GEMINI_ERROR');

    const points = await telemetry.points('pipeline.generations');
    expect(points.map((p) => [p.attributes, p.value])).toEqual(
      expect.arrayContaining([
        [{ status: 'succeeded' }, 1],
        [{ status: 'failed', 'error.code': 'GEMINI_ERROR' }, 2],
      ]),
    );
  });
});
