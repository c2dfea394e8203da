/**
 * Telemetry across instances: built service processes (`dist/main.js`) in the distributed deployment
 * (one PostgreSQL database, one Redis prefix, ROLE=api and ROLE=worker), exporting OTLP to a receiver
 * in this process and serving /metrics. Gemini is a gate here: the test lets each call through, so
 * nothing races a clock.
 *
 * - Trace context travels with the job: the worker's `pipeline.image` span belongs to the API
 *   request's trace, its parent the request's server span in the other process.
 * - Each instance reports its own queue, job, quota and takeover metrics, counters at 0 from the start.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startGeminiGate, type GeminiGate } from '../support/gemini-gate';
import { OtlpReceiver, ReceivedSpan, startOtlpReceiver } from '../support/otlp-receiver';
import { createTestDatabase, type TestDatabase } from '../support/postgres';
import { deleteKeys, TEST_REDIS_URL, uniquePrefix } from '../support/redis';
import { startService, type ServiceProcess } from '../support/service-process';

type Body = Record<string, any>;
const SERVER = 2;
const CLIENT = 3;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
async function eventually<T>(check: () => Promise<T | undefined> | T | undefined, what: string, timeoutMs = 45_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

/** `/metrics` of one instance: the sum of every sample of `name` (any labels); undefined when absent. */
async function scrape(svc: ServiceProcess): Promise<(name: string) => number | undefined> {
  const text = await (await fetch(svc.metricsUrl!)).text();
  return (name) => {
    const samples = text
      .split('\n')
      .filter((line) => line.startsWith(`${name} `) || line.startsWith(`${name}{`))
      .map((line) => Number(line.slice(line.lastIndexOf(' ') + 1)));
    return samples.length === 0 ? undefined : samples.reduce((a, b) => a + b, 0);
  };
}

describe('Telemetry across distributed instances (integration)', () => {
  let db: TestDatabase;
  let prefix: string;
  let gate: GeminiGate;
  let receiver: OtlpReceiver;
  let sharedDataDir: string;
  let api: ServiceProcess;
  let worker: ServiceProcess;
  const services: ServiceProcess[] = [];

  const instance = async (role: 'api' | 'worker'): Promise<ServiceProcess> => {
    const svc = await startService({
      ROLE: role,
      DATABASE_URL: db.url,
      REDIS_URL: TEST_REDIS_URL,
      REDIS_PREFIX: prefix,
      GEMINI_BASE_URL: gate.url,
      GEMINI_API_KEY: 'test-key',
      DATA_DIR: sharedDataDir,
      PALETTE_WORKERS: '1',
      QUEUE_LOCK_MS: '2000',
      OTEL_EXPORTER_OTLP_ENDPOINT: receiver.endpoint,
      OTEL_METRIC_EXPORT_INTERVAL: '1000',
      OTEL_SERVICE_NAME: 'his-distributed',
    });
    services.push(svc);
    return svc;
  };

  beforeAll(async () => {
    db = await createTestDatabase();
    prefix = uniquePrefix('disttel');
    gate = await startGeminiGate();
    receiver = await startOtlpReceiver();
    sharedDataDir = mkdtempSync(join(tmpdir(), 'his-disttel-'));
    api = await instance('api');
    worker = await instance('worker');
  }, 90_000);

  afterAll(async () => {
    gate?.releaseAll();
    await Promise.allSettled(services.map((s) => s.stop('SIGKILL')));
    await gate?.close();
    await receiver?.close();
    await db?.drop();
    if (prefix) await deleteKeys(prefix);
    if (sharedDataDir) rmSync(sharedDataDir, { recursive: true, force: true });
  });

  const create = (prompt: string, headers: Record<string, string> = {}) =>
    fetch(`${api.baseUrl}/api/v1/generations`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify({ prompt }) });
  const untilFinal = (id: string) =>
    eventually(async () => {
      const g = (await (await fetch(`${api.baseUrl}/api/v1/generations/${id}`)).json()) as Body;
      return ['succeeded', 'failed', 'canceled'].includes(g.status) ? g : undefined;
    }, `generation ${id} to finish`);
  const instanceId = (span: { resource: Record<string, unknown> }) => span.resource['service.instance.id'];

  it('trace context travels with the job: the worker\'s pipeline.image span is a child of the API request\'s span', async () => {
    const answer = create('a paper crane', { prefer: 'wait=60' });
    await gate.untilWaiting(1);
    gate.release();
    const res = await answer;
    expect(res.status).toBe(201);
    const { id } = (await res.json()) as Body;

    const spans = () => receiver.spans();
    let request: ReceivedSpan | undefined;
    let image: ReceivedSpan | undefined;
    await receiver.waitFor(
      () => {
        request = spans().find((s) => s.name === 'POST /api/v1/generations' && s.kind === SERVER);
        image = spans().find((s) => s.name === 'pipeline.image' && request !== undefined && s.traceId === request.traceId);
        return image !== undefined && ['pipeline.gemini', 'pipeline.palette'].every((n) => spans().some((s) => s.name === n && s.traceId === request!.traceId));
      },
      20_000,
      () => `spans so far: ${spans().map((s) => `${s.name}[${s.traceId.slice(0, 8)}](${s.spanId}←${s.parentSpanId})`).join(', ')}`,
    );

    // Two processes: the request span comes from the API instance, the job's spans from the worker.
    expect(instanceId(request!)).toEqual(expect.any(String));
    expect(instanceId(image!)).toEqual(expect.any(String));
    expect(instanceId(image!)).not.toBe(instanceId(request!));
    expect(request!.resource['service.name']).toBe('his-distributed');

    // One trace, and the job's root span hangs under the request's server span.
    expect(image!.traceId).toBe(request!.traceId);
    expect(image!.parentSpanId).toBe(request!.spanId);
    const inTrace = spans().filter((s) => s.traceId === request!.traceId);
    for (const stage of ['pipeline.gemini', 'pipeline.upload', 'pipeline.palette']) {
      expect(inTrace.find((s) => s.name === stage)).toMatchObject({ parentSpanId: image!.spanId });
    }
    expect(inTrace.some((s) => s.kind === CLIENT && s.name.startsWith('generate_content'))).toBe(true);
    // The worker's spans all belong to the worker; the API made none of the pipeline's.
    expect(new Set(inTrace.filter((s) => s.name.startsWith('pipeline.')).map(instanceId))).toEqual(new Set([instanceId(image!)]));
    expect(id).toEqual(expect.any(String));
  });

  it('each instance reports its own queue, job and quota metrics; a 429 counts one pause on the worker that saw it', async () => {
    const before = await scrape(worker);
    const waitsBefore = before('gemini_quota_wait_duration_count') ?? 0;

    // The first request is answered 429 (Retry-After 1 s): the quota pauses, the retry succeeds.
    const answer = create('a kite in a storm [emulator:429x1]', { prefer: 'wait=60' });
    await gate.untilWaiting(1);
    gate.release();
    await gate.untilWaiting(1);
    gate.release();
    const res = await answer;
    expect(res.status).toBe(201);
    expect(await res.json()).toMatchObject({ status: 'succeeded' });

    const w = await scrape(worker);
    expect(w('gemini_quota_pauses_total')).toBe(1);
    expect(w('gemini_quota_wait_duration_count')).toBe(waitsBefore + 2);
    expect(w('gemini_semaphore_wait_duration_count')).toBeGreaterThanOrEqual(2);
    expect(w('gemini_semaphore_in_flight')).toBe(0);
    expect(w('pipeline_jobs_active')).toBe(0);
    expect(w('pipeline_jobs_takeovers_total')).toBe(0);
    expect(w('pipeline_queue_depth')).toBe(0);

    // The API instance runs no job and never calls Gemini, yet reports the queue and a takeover count of 0.
    const a = await scrape(api);
    expect([a('pipeline_queue_depth'), a('pipeline_jobs_active'), a('pipeline_jobs_takeovers_total')]).toEqual([0, 0, 0]);
    expect(a('gemini_semaphore_in_flight')).toBeUndefined();
    expect(a('gemini_quota_pauses_total')).toBe(0);

    // The same over OTLP, per instance (service.instance.id): the counters exist before any event.
    await receiver.waitFor(
      () => receiver.metrics().some((m) => m.name === 'gemini.quota.pauses' && m.points.some((p) => p.value === 1)),
      15_000,
      () => `metrics so far: ${[...receiver.metricNames()].join(', ')}`,
    );
    const takeovers = receiver.metrics().filter((m) => m.name === 'pipeline.jobs.takeovers');
    expect(new Set(takeovers.map(instanceId)).size).toBe(2);
    expect(takeovers.every((m) => m.type === 'sum' && m.unit === '{job}' && m.points.every((p) => p.value === 0))).toBe(true);
  });

  it('a worker SIGKILLed mid-job: the worker that takes the job over counts the takeover', async () => {
    const res = await create('a lighthouse keeper');
    expect(res.status).toBe(202);
    const { id } = (await res.json()) as Body;
    await gate.untilWaiting(1);
    await worker.stop('SIGKILL');
    const next = await instance('worker');
    // After the killed worker's lock expires (QUEUE_LOCK_MS 2 s), the new worker runs the job again.
    await gate.untilWaiting(1, 30_000);
    gate.release();
    expect(await untilFinal(id)).toMatchObject({ status: 'succeeded' });

    const n = await scrape(next);
    expect(n('pipeline_jobs_takeovers_total')).toBe(1);
    expect(n('pipeline_jobs_active')).toBe(0);
    expect((await scrape(api))('pipeline_jobs_takeovers_total')).toBe(0);
    await receiver.waitFor(
      () => receiver.metrics().some((m) => m.name === 'pipeline.jobs.takeovers' && m.points.some((p) => p.value === 1)),
      15_000,
      () => 'no takeover exported over OTLP',
    );
  });
});
