import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startGeminiEmulator, type GeminiEmulator } from '../../src/gemini/emulator/emulator.server';
import { createTestDatabase, type TestDatabase } from '../support/postgres';
import { deleteKeys, startRedisServer, TEST_REDIS_URL, uniquePrefix, type PrivateRedis } from '../support/redis';
import { startService, type ServiceProcess } from '../support/service-process';

type Body = Record<string, any>;

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

const json = async (res: Response): Promise<Body> => (await res.json()) as Body;
/** The sum of a metric's samples on an instance's Prometheus endpoint (0 when absent). */
async function metric(svc: ServiceProcess, name: string): Promise<number> {
  const text = await (await fetch(svc.metricsUrl!)).text();
  return text
    .split('\n')
    .filter((line) => line.startsWith(`${name} `) || line.startsWith(`${name}{`))
    .reduce((sum, line) => sum + Number(line.split(' ').at(-1)), 0);
}
const post = (svc: ServiceProcess, prompt: string, headers: Record<string, string> = {}, extra: Body = {}) =>
  fetch(`${svc.baseUrl}/api/v1/generations`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify({ prompt, ...extra }) });
const get = async (svc: ServiceProcess, id: string): Promise<Body> => json(await fetch(`${svc.baseUrl}/api/v1/generations/${id}`));
const untilFinal = (svc: ServiceProcess, id: string, timeoutMs?: number) =>
  eventually(async () => {
    const g = await get(svc, id);
    return ['succeeded', 'failed', 'canceled'].includes(g.status) ? g : undefined;
  }, `generation ${id} to finish`, timeoutMs);

/** Reads an SSE stream to its end (the server closes it after the final state); returns the events. */
async function readEvents(url: string): Promise<Body[]> {
  const res = await fetch(url, { signal: AbortSignal.timeout(60_000) });
  expect(res.status).toBe(200);
  const text = await res.text();
  return text
    .split('\n\n')
    .flatMap((block) => block.split('\n').filter((l) => l.startsWith('data: ')))
    .map((l) => JSON.parse(l.slice(6)) as Body);
}

/**
 * N service processes (`dist/main.js`) on one PostgreSQL database and one Redis prefix, behind no load
 * balancer: each request picks its instance explicitly. They share one Gemini emulator (in this
 * process, so its counters are readable), which proves what the quota lets through. Every timeout a
 * test exercises is driven by the emulator's directives or by the short lock configured here.
 */
describe('Distributed deployment: instances sharing PostgreSQL and a BullMQ queue in Redis (integration)', () => {
  let db: TestDatabase;
  let prefix: string;
  let emulator: GeminiEmulator;
  /** One images folder for every instance: the shared storage a local-folder deployment needs. */
  let sharedDataDir: string;
  const services: ServiceProcess[] = [];

  const instance = async (env: Record<string, string> = {}, redisUrl = TEST_REDIS_URL): Promise<ServiceProcess> => {
    const svc = await startService({
      DATABASE_URL: db.url,
      REDIS_URL: redisUrl,
      REDIS_PREFIX: prefix,
      GEMINI_BASE_URL: emulator.url,
      GEMINI_API_KEY: 'test-key',
      DATA_DIR: sharedDataDir,
      LOG_LEVEL: 'info',
      PALETTE_WORKERS: '1',
      QUEUE_LOCK_MS: '2000',
      SHUTDOWN_DRAIN_MS: '10000',
      ...env,
    });
    services.push(svc);
    return svc;
  };

  beforeAll(async () => {
    db = await createTestDatabase();
    emulator = await startGeminiEmulator({ host: '127.0.0.1', port: 0 });
    sharedDataDir = mkdtempSync(join(tmpdir(), 'his-dist-'));
  });

  beforeEach(() => {
    prefix = uniquePrefix('dist');
    emulator.resetStats();
  });

  afterEach(async () => {
    await Promise.allSettled(services.splice(0).map((s) => s.stop('SIGKILL')));
    await deleteKeys(prefix);
  });

  afterAll(async () => {
    await emulator?.close();
    await db?.drop();
    rmSync(sharedDataDir, { recursive: true, force: true });
  });

  it('any instance answers for any generation: records, Prefer: wait, SSE and cancel across instances; a worker serves health only', async () => {
    // Two API instances and one worker: every job runs on the worker, so everything an API instance
    // learns about a job after creating it crossed over Redis.
    const api = await instance({ ROLE: 'api' });
    const worker = await instance({ ROLE: 'worker' });
    const other = await instance({ ROLE: 'api' });

    // Created on one instance, run by the worker, its final state reaches the waiting request.
    const waited = await post(api, 'a red square', { Prefer: 'wait=60' });
    expect(waited.status).toBe(201);
    const done = await json(waited);
    expect(done).toMatchObject({ status: 'succeeded', stage: 'done', error: null });
    expect(await get(other, done.id)).toEqual(done);
    const image = await fetch(`${other.baseUrl}${done.images[0].url}`);
    expect(image.status).toBe(200);

    // A stream opened on another instance gets the worker's changes as they happen, and closes at the end.
    const slow = await json(await post(api, 'a blue circle [emulator:latency=1500]'));
    const events = await readEvents(`${other.baseUrl}/api/v1/generations/${slow.id}/events`);
    expect(events[0].status).not.toBe('succeeded');
    expect(events.at(-1)).toMatchObject({ id: slow.id, status: 'succeeded', stage: 'done' });
    expect(events.length).toBeGreaterThanOrEqual(2);

    // Cancel on one instance aborts the Gemini call on the worker, within a second or so.
    const hung = await json(await post(api, 'never ends [emulator:hang]'));
    await eventually(async () => ((await get(other, hung.id)).stage === 'gemini' ? true : undefined), 'the hung call to start');
    await eventually(() => (emulator.stats().inFlight === 1 ? true : undefined), 'the emulator to hold the call');
    const canceled = await fetch(`${other.baseUrl}/api/v1/generations/${hung.id}/cancel`, { method: 'POST' });
    expect(canceled.status).toBe(200);
    expect(await json(canceled)).toMatchObject({ status: 'canceled', error: { code: 'CANCELED' } });
    await eventually(() => (emulator.stats().inFlight === 0 ? true : undefined), 'the worker to abort its Gemini call');
    expect(emulator.stats().clientAborts).toBe(1);

    // ROLE=worker serves health and metrics only; ROLE=api never loads the Gemini client.
    expect((await fetch(`${worker.baseUrl}/api/v1/generations`)).status).toBe(404);
    expect((await fetch(`${worker.baseUrl}/health/ready`)).status).toBe(200);
    expect(api.logs()).not.toMatch(/GeminiModule dependencies initialized/);
    expect(worker.logs()).toMatch(/GeminiModule dependencies initialized/);
  });

  it('the emulator never sees more calls in flight than GEMINI_MAX_CONCURRENCY, with three instances busy', async () => {
    const env = { GEMINI_MAX_CONCURRENCY: '2', GEMINI_MAX_CONCURRENCY_PER_CLIENT: '2', MAX_ACTIVE_GENERATIONS_PER_CLIENT: '100' };
    const all = [await instance(env), await instance(env), await instance(env)];
    const created = await Promise.all(
      Array.from({ length: 12 }, async (_, i) => json(await post(all[i % 3], `busy ${i} [emulator:latency=250]`))),
    );
    for (const g of created) expect(await untilFinal(all[0], g.id)).toMatchObject({ status: 'succeeded' });
    expect(emulator.stats()).toMatchObject({ requests: 12, inFlight: 0 });
    // Never above the global limit, and the limit was used (not one call at a time).
    expect(emulator.stats().maxInFlight).toBe(2);
  });

  it('a Gemini 429 pauses every instance for the delay Gemini asks', async () => {
    const env = { GEMINI_MAX_RETRIES: '1' };
    const [a, b] = [await instance(env), await instance(env)];
    // Gemini answers A's first call 429 and asks for 30 s: every instance holds its calls that long.
    const limited = await json(await post(a, 'too fast [emulator:429x1] [emulator:retryafter=30]'));
    await eventually(() => (emulator.stats().byStatus[429] === 1 ? true : undefined), 'the 429');
    await eventually(async () => ((await metric(a, 'gemini_quota_pauses_total')) >= 1 ? true : undefined), 'A to record the pause');
    const held = await json(await post(b, 'held by the pause'));
    // B's call waits for the pause (it is queued at Gemini's door, not sent): its wait is recorded
    // once the pause is over, so here it is enough that the emulator never saw it.
    await eventually(async () => ((await get(b, held.id)).stage === 'gemini' ? true : undefined), "B's job to hold a slot");
    await sleep(500);
    expect(emulator.stats().requests).toBe(1);
    // Cancel both rather than wait 30 s.
    for (const [svc, g] of [[a, limited], [b, held]] as const) {
      expect((await fetch(`${svc.baseUrl}/api/v1/generations/${g.id}/cancel`, { method: 'POST' })).status).toBe(200);
    }
    expect(emulator.stats().requests).toBe(1);
  });

  it('GEMINI_RATE_LIMIT_PER_MINUTE counts the calls of every instance together', async () => {
    const env = { GEMINI_RATE_LIMIT_PER_MINUTE: '2' };
    const [a, b] = [await instance(env), await instance(env)];
    expect((await post(a, 'first of the minute', { Prefer: 'wait=60' })).status).toBe(201);
    expect((await post(b, 'second of the minute', { Prefer: 'wait=60' })).status).toBe(201);
    const third = await json(await post(a, 'third waits for the window'));
    await eventually(async () => ((await get(a, third.id)).stage === 'gemini' ? true : undefined), 'the third job to hold a slot');
    await sleep(500);
    expect(emulator.stats().requests).toBe(2);
    expect((await fetch(`${a.baseUrl}/api/v1/generations/${third.id}/cancel`, { method: 'POST' })).status).toBe(200);
  });

  it('a worker SIGKILLed mid-call: another takes the job over after the lock expires and finishes it', async () => {
    const first = await instance();
    const g = await json(await post(first, 'survives its worker [emulator:latency=1500]'));
    await eventually(() => (emulator.stats().inFlight === 1 ? true : undefined), 'the first worker to call Gemini');
    await first.stop('SIGKILL');
    const second = await instance();
    const done = await untilFinal(second, g.id);
    expect(done).toMatchObject({ status: 'succeeded', images: [expect.objectContaining({ index: 0 })] });
    // The call was made twice: once by the killed worker, once by the one that took over.
    expect(emulator.stats().requests).toBe(2);
    expect(second.logs()).toMatch(/another worker takes it over/);
  });

  it('a job that keeps killing its workers ends failed/INTERRUPTED after QUEUE_MAX_TAKEOVERS', async () => {
    const env = { QUEUE_MAX_TAKEOVERS: '1' };
    let svc = await instance(env);
    const g = await json(await post(svc, 'a poison pill [emulator:hang]'));
    // Each worker that takes the job hangs in its Gemini call and is killed.
    for (let round = 0; round < 2; round++) {
      const requests = emulator.stats().requests;
      await eventually(() => (emulator.stats().requests > requests ? true : undefined), `worker ${round + 1} to take the job`);
      await svc.stop('SIGKILL');
      svc = await instance(env);
    }
    const done = await untilFinal(svc, g.id);
    expect(done).toMatchObject({ status: 'failed', images: [], error: { code: 'INTERRUPTED' } });
    expect(emulator.stats().requests).toBe(2);
  });

  it('SIGTERM on a worker hands its running job back (not failed); another worker finishes it', async () => {
    const leaving = await instance({ SHUTDOWN_DRAIN_MS: '200' });
    // The first call hangs (it outlives any drain, however slow the machine); the one after the hand-back answers.
    const g = await json(await post(leaving, 'outlives the drain [emulator:hangx1]'));
    await eventually(() => (emulator.stats().inFlight === 1 ? true : undefined), 'the call to start');
    const staying = await instance();
    expect(await leaving.stop('SIGTERM')).toEqual({ code: 0, signal: null });
    expect(leaving.logs()).toMatch(/1 handed back to the queue/);
    // Not failed meanwhile: the record stays unfinished until the other worker completes it.
    expect((await get(staying, g.id)).status).not.toBe('failed');
    const done = await untilFinal(staying, g.id);
    expect(done).toMatchObject({ status: 'succeeded', error: null });
    expect(emulator.stats()).toMatchObject({ requests: 2, clientAborts: 1 });
  });

  describe('Redis stopped and started again', () => {
    let redis: PrivateRedis;

    beforeAll(async () => {
      redis = await startRedisServer();
    });

    afterAll(async () => {
      await redis?.stop('SIGKILL');
    });

    it('readiness 503 and new generations 503 QUEUE_UNAVAILABLE while Redis is down, reads served; all recovers when it returns', async () => {
      const svc = await instance({}, redis.url);
      const before = await json(await post(svc, 'before the outage', { Prefer: 'wait=60' }));
      expect(before.status).toBe('succeeded');

      await redis.stop('SIGKILL');
      const ready = await eventually(async () => {
        const res = await fetch(`${svc.baseUrl}/health/ready`);
        return res.status === 503 ? json(res) : undefined;
      }, 'readiness to notice');
      expect(ready.details.queue).toMatchObject({ status: 'down' });
      const refused = await post(svc, 'during the outage');
      expect(refused.status).toBe(503);
      expect(await json(refused)).toMatchObject({ code: 'QUEUE_UNAVAILABLE' });
      expect(refused.headers.get('retry-after')).toMatch(/^\d+$/);
      // Reads come from PostgreSQL.
      expect(await get(svc, before.id)).toMatchObject({ status: 'succeeded' });
      expect((await fetch(`${svc.baseUrl}/api/v1/generations?limit=5`)).status).toBe(200);
      // No half-written record: the refused generation is not in the history.
      const history = await json(await fetch(`${svc.baseUrl}/api/v1/generations?limit=50`));
      expect(history.items.map((g: Body) => g.prompt)).not.toContain('during the outage');

      await redis.start();
      await eventually(async () => ((await fetch(`${svc.baseUrl}/health/ready`)).status === 200 ? true : undefined), 'readiness to recover');
      const after = await eventually(async () => {
        const res = await post(svc, 'after the outage', { Prefer: 'wait=30' });
        return res.status === 201 ? json(res) : undefined;
      }, 'generations to work again');
      expect(after.status).toBe('succeeded');
    });
  });

  it('refuses REDIS_URL without DATABASE_URL at start, naming both', async () => {
    await expect(startService({ REDIS_URL: TEST_REDIS_URL, REDIS_PREFIX: prefix })).rejects.toThrow(/REDIS_URL is set without DATABASE_URL/);
  });
});
