import { AppMetrics } from '../telemetry/app-metrics';
import { installTestTelemetry, TestTelemetry } from '../telemetry/testing';
import { InProcessJobQueue } from './in-process-job-queue';
import type { ImageJob, JobContext } from './job-queue';
import { observeJobQueue } from './queue-metrics';

describe('job queue metrics', () => {
  let telemetry: TestTelemetry;
  let metrics: AppMetrics;

  beforeEach(() => {
    telemetry = installTestTelemetry();
    metrics = new AppMetrics();
  });
  afterEach(() => telemetry.uninstall());

  const value = async (name: string) => (await telemetry.points(name))[0]?.value;

  it('reports the depth, the active jobs and the capacity of the queue as they are at each collection', async () => {
    const queue = new InProcessJobQueue();
    const contexts: JobContext[] = [];
    const finish: (() => void)[] = [];
    await queue.startWorker((_job, context) => {
      contexts.push(context);
      return new Promise<void>((resolve) => finish.push(resolve));
    });
    observeJobQueue(metrics, queue, 7);
    expect([await value('pipeline.queue.depth'), await value('pipeline.jobs.active'), await value('pipeline.queue.capacity')]).toEqual([0, 0, 7]);

    const job = (index: number): ImageJob => ({ generationId: 'gen_1', index, owner: null, client: 'c' });
    await queue.enqueue([job(0), job(1), job(2)]);
    // Read at this collection, not at the one before.
    expect([await value('pipeline.queue.depth'), await value('pipeline.jobs.active')]).toEqual([3, 3]);
    contexts[0].started();
    expect([await value('pipeline.queue.depth'), await value('pipeline.jobs.active')]).toEqual([2, 3]);

    for (const done of finish) done();
    await queue.drain(1000);
    expect([await value('pipeline.queue.depth'), await value('pipeline.jobs.active')]).toEqual([0, 0]);
    const units = await Promise.all(['pipeline.queue.depth', 'pipeline.jobs.active'].map(async (n) => (await telemetry.metric(n))?.descriptor.unit));
    expect(units).toEqual(['{job}', '{job}']);
  });

  it('a gauge read from a backend reports its last value while the backend fails or does not answer, and never holds a collection', async () => {
    let answer: () => Promise<number> = async () => 4;
    metrics.gaugeAsync('test.remote.depth', 'depth', () => answer(), '{job}', 50);
    expect(await value('test.remote.depth')).toBe(4);
    answer = () => Promise.reject(new Error('Redis is away'));
    expect(await value('test.remote.depth')).toBe(4);
    answer = () => new Promise<number>(() => undefined);
    const started = performance.now();
    expect(await value('test.remote.depth')).toBe(4);
    // Bounded by the read timeout (50 ms here), not by the backend.
    expect(performance.now() - started).toBeLessThan(5_000);
    answer = async () => 9;
    expect(await value('test.remote.depth')).toBe(9);
  });

  it('a gauge read from a backend that never answered reports nothing', async () => {
    metrics.gaugeAsync('test.remote.never', 'never', () => Promise.reject(new Error('down')), '{job}', 50);
    expect(await telemetry.points('test.remote.never')).toEqual([]);
  });
});
