/**
 * PostgreSQL going away under a distributed instance (DATABASE_URL + REDIS_URL). The instance talks
 * to its own database through a TCP proxy, so the test can make PostgreSQL refuse this instance alone
 * and then come back, without touching the server other tests share. Gemini is a gate in this
 * process: the test decides when each call answers, so nothing here races a clock.
 *
 * First the driver boundary on its own (the pool against the real server), then the built service:
 * while the database is away readiness is 503, reads and writes answer 503 with a code, the process
 * stays up, and the job that was running is retried by BullMQ until the database is back, then
 * succeeds.
 */
import { sql } from 'kysely';
import { Logger } from '@nestjs/common';
import { createDatabase, Database } from '../../src/database/database';
import { DatabaseUnavailableError } from '../../src/database/database.errors';
import { startGeminiGate, type GeminiGate } from '../support/gemini-gate';
import { createTestDatabase, type TestDatabase } from '../support/postgres';
import { deleteKeys, TEST_REDIS_URL, uniquePrefix } from '../support/redis';
import { startService, type ServiceProcess } from '../support/service-process';
import { startTcpProxy, type TcpProxy } from '../support/tcp-proxy';

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

const proxyTo = (url: string) => startTcpProxy({ host: new URL(url).hostname, port: Number(new URL(url).port || 5432) });

describe('PostgreSQL errors typed at the driver boundary (real server)', () => {
  let testDb: TestDatabase;
  let proxy: TcpProxy;
  let warn: jest.SpyInstance;
  const opened: Database[] = [];

  beforeAll(async () => {
    testDb = await createTestDatabase();
    proxy = await proxyTo(testDb.url);
    warn = jest.spyOn(Logger.prototype, 'warn').mockImplementation(() => undefined);
  });

  afterAll(async () => {
    for (const db of opened) await db.destroy().catch(() => undefined);
    await proxy?.close();
    await testDb?.drop();
    warn?.mockRestore();
  });

  const open = async (url: string, options: { connectTimeoutMs?: number; poolSize?: number } = {}) => {
    const db = await createDatabase({ dialect: 'postgres', url, ...options });
    opened.push(db);
    return db;
  };
  const failure = (promise: Promise<unknown>) => promise.then(() => undefined, (error: unknown) => error as Error);

  it('a refused connection and a connect timeout → DATABASE_UNAVAILABLE; the pool works again once the server answers', async () => {
    proxy.mode = 'forward';
    const db = await open(proxy.via(testDb.url), { connectTimeoutMs: 300 });
    proxy.mode = 'refuse';
    proxy.cutAll();
    const refused = await failure(sql`select 1`.execute(db));
    expect(refused).toBeInstanceOf(DatabaseUnavailableError);
    expect(refused).toMatchObject({ status: 503, code: 'DATABASE_UNAVAILABLE', transient: true });
    expect(String((refused?.cause as Error)?.message)).toMatch(/ECONNRESET|ECONNREFUSED|terminated/);

    // The server black-holed: the pool gives up after the (small, injected) connect timeout.
    proxy.mode = 'hang';
    const timedOut = await failure(sql`select 1`.execute(db));
    expect(timedOut).toMatchObject({ code: 'DATABASE_UNAVAILABLE' });
    expect(String((timedOut?.cause as Error)?.message)).toMatch(/timeout/);

    proxy.mode = 'forward';
    proxy.cutAll();
    expect((await sql<{ ok: number }>`select 1 as ok`.execute(db)).rows).toEqual([{ ok: 1 }]);
  });

  it('a deadlock → DATABASE_BUSY (transient); a unique violation stays the driver\'s error', async () => {
    const db = await open(testDb.url, { poolSize: 2 });
    await sql`create table lock_pair (id int primary key, v int)`.execute(db);
    await sql`insert into lock_pair values (1, 0), (2, 0)`.execute(db);

    // Two transactions take the two rows in opposite orders; the server breaks the cycle (40P01).
    const deferred = () => {
      let resolve!: () => void;
      const promise = new Promise<void>((r) => (resolve = r));
      return { promise, resolve };
    };
    const first = deferred();
    const second = deferred();
    const crossing = (mine: number, theirs: number, locked: () => void, otherLocked: Promise<void>) =>
      db.transaction().execute(async (tx) => {
        await sql`update lock_pair set v = v + 1 where id = ${mine}`.execute(tx);
        locked();
        await otherLocked;
        await sql`update lock_pair set v = v + 1 where id = ${theirs}`.execute(tx);
      });
    const results = await Promise.allSettled([crossing(1, 2, first.resolve, second.promise), crossing(2, 1, second.resolve, first.promise)]);
    const rejected = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected').map((r) => r.reason as Error);
    expect(rejected).toHaveLength(1);
    expect(rejected[0]).toMatchObject({ status: 503, code: 'DATABASE_BUSY', transient: true });
    expect(rejected[0].cause).toMatchObject({ code: '40P01' });

    const duplicate = await failure(sql`insert into lock_pair values (1, 0)`.execute(db));
    expect(duplicate).not.toBeInstanceOf(DatabaseUnavailableError);
    expect(duplicate).toMatchObject({ code: '23505' });
  });
});

describe('PostgreSQL down under a distributed instance (built service, integration)', () => {
  let testDb: TestDatabase;
  let proxy: TcpProxy;
  let gate: GeminiGate;
  let prefix: string;
  let svc: ServiceProcess;

  beforeAll(async () => {
    testDb = await createTestDatabase();
    proxy = await proxyTo(testDb.url);
    gate = await startGeminiGate();
    prefix = uniquePrefix('pgdown');
    svc = await startService({
      DATABASE_URL: proxy.via(testDb.url),
      REDIS_URL: TEST_REDIS_URL,
      REDIS_PREFIX: prefix,
      GEMINI_BASE_URL: gate.url,
      GEMINI_API_KEY: 'test-key',
      PALETTE_WORKERS: '1',
      LOG_LEVEL: 'info',
    });
  }, 60_000);

  afterAll(async () => {
    gate?.releaseAll();
    if (proxy) proxy.mode = 'forward';
    await svc?.stop('SIGKILL').catch(() => undefined);
    await gate?.close();
    await proxy?.close();
    await testDb?.drop();
    if (prefix) await deleteKeys(prefix);
  });

  const get = (path: string) => fetch(`${svc.baseUrl}${path}`);
  const post = (prompt: string) =>
    fetch(`${svc.baseUrl}/api/v1/generations`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ prompt }) });
  const ready = async () => {
    const res = await get('/health/ready');
    return { status: res.status, body: (await res.json()) as Body };
  };
  const alive = () => Promise.race([svc.exited.then(() => false), sleep(0).then(() => true)]);

  it('readiness 503, reads and writes 503 with a code, no crash; the running job is retried and succeeds once the database is back', async () => {
    expect((await ready()).status).toBe(200);
    const created = await post('a lantern in the rain');
    expect(created.status).toBe(202);
    const { id } = (await created.json()) as Body;
    // The job holds its Gemini call at the gate: it is running when the database goes away.
    await gate.untilWaiting(1);
    await eventually(async () => (((await (await get(`/api/v1/generations/${id}`)).json()) as Body).stage === 'gemini' ? true : undefined), 'the record at stage gemini');

    proxy.mode = 'refuse';
    proxy.cutAll();

    // Readiness: database down, with the service's code and fixed text (no driver detail).
    const down = await eventually(async () => {
      const r = await ready();
      return r.status === 503 ? r : undefined;
    }, 'readiness 503');
    expect(down.body.details.database).toEqual({
      status: 'down',
      code: 'DATABASE_UNAVAILABLE',
      message: 'The database cannot be reached right now; retry shortly',
    });
    expect(down.body.details.queue).toMatchObject({ status: 'up' });

    // Reads and writes: 503 with a code and Retry-After, never a 500.
    for (const res of [await get(`/api/v1/generations/${id}`), await get('/api/v1/generations?limit=5'), await post('while the database is away')]) {
      expect([res.status, res.headers.get('retry-after')]).toEqual([503, '5']);
      expect(await res.json()).toEqual({
        statusCode: 503,
        code: 'DATABASE_UNAVAILABLE',
        message: 'The database cannot be reached right now; retry shortly',
      });
    }
    expect((await get('/health/live')).status).toBe(200);

    // Gemini answers; the image is made, but its record cannot be written: the job fails this
    // attempt and BullMQ schedules it again (attempts 5, backoff 2 s doubling).
    gate.release();
    await eventually(() => (/Job \S+ attempt 1 of 5 failed \(DATABASE_UNAVAILABLE/.test(svc.logs()) ? true : undefined), 'the first attempt to fail');
    expect(await alive()).toBe(true);

    proxy.mode = 'forward';
    await eventually(async () => ((await ready()).status === 200 ? true : undefined), 'readiness 200 again');

    // A later attempt reads the record, finds the image unrecorded and makes it again.
    await gate.untilWaiting(1, 60_000);
    gate.release();
    const done = await eventually(async () => {
      const res = await get(`/api/v1/generations/${id}`);
      const body = (await res.json()) as Body;
      return res.status === 200 && ['succeeded', 'failed', 'canceled'].includes(body.status) ? body : undefined;
    }, 'the generation to finish', 90_000);
    expect(done).toMatchObject({ id, status: 'succeeded', stage: 'done', error: null, images: [expect.objectContaining({ index: 0 })] });
    expect((await get(done.images[0].url)).status).toBe(200);

    // New work is admitted again, and the process never went down.
    expect((await post('after the outage')).status).toBe(202);
    expect(await alive()).toBe(true);
    expect(svc.logs()).not.toMatch(/Unhandled error|uncaught/i);
    gate.releaseAll();
  }, 180_000);
});
