import { existsSync, mkdtempSync, readdirSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { createServer, type AddressInfo, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { NestExpressApplication } from '@nestjs/platform-express';
import { Test } from '@nestjs/testing';
import request from 'supertest';
import { configureApp, createApp } from '../../src/app.factory';
import { AppModule } from '../../src/app.module';
import { AppConfig, loadConfig } from '../../src/config/app-config';
import type { GeminiEmulator } from '../../src/gemini/emulator/emulator.server';
import { GeminiService } from '../../src/gemini/gemini.service';
import { PaletteService, resolveWorkerFile } from '../../src/palette/palette.service';
import { JobQueue } from '../../src/pipeline/job-queue';
import { AppMetrics } from '../../src/telemetry/app-metrics';
import { startTestGemini, type TestGemini } from '../support/gemini-emulator';
import { referenceImage } from '../support/images';

type Body = Record<string, any>;

/**
 * Fault handling through the real app: every module, the real @google/genai SDK against the
 * bundled emulator and its in-prompt fault directives, SQLite, the local image folder and the
 * real palette worker pool. Only the test that exercises the Gemini timeout runs with a short one;
 * everywhere else it is generous, so a busy machine cannot time out a call that should answer.
 */
const TIMEOUT_MS = 1500;
const GENEROUS_TIMEOUT_MS = 60_000;
/**
 * Upper bounds only show that a configured limit fired rather than a default (120 s, 60 s): generous,
 * because two busy cores running other suites may delay anything by seconds.
 */
const SLACK_MS = 10_000;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Polls `check` until it returns a value other than undefined, or fails after `timeoutMs`. */
async function eventually<T>(check: () => Promise<T | undefined> | T | undefined, what: string, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

/** Image files (not temp or sidecar dot-files) stored for generation `id` under the local root. */
function storedFiles(dataDir: string, id: string): string[] {
  const root = join(dataDir, 'images');
  if (!existsSync(root)) return [];
  return (readdirSync(root, { recursive: true }) as string[]).filter((p) => p.includes(id) && !p.split('/').at(-1)!.startsWith('.') && /\.\w+$/.test(p));
}

/** The bundled emulator, shared by this file's apps (each test resets its stats where it counts). */
let testGemini: TestGemini;
beforeAll(async () => {
  testGemini = await startTestGemini();
});
afterAll(async () => {
  await testGemini?.close();
});

function baseEnv(dataDir: string, extra: Record<string, string> = {}): Record<string, string> {
  return {
    ...testGemini.env,
    DATA_DIR: dataDir,
    METRICS_PORT: '0',
    OTEL_SDK_DISABLED: 'true',
    LOG_LEVEL: 'silent',
    PALETTE_WORKERS: '1',
    GEMINI_TIMEOUT_MS: String(GENEROUS_TIMEOUT_MS),
    GEMINI_MAX_RETRIES: '1',
    ...extra,
  };
}

describe('Reliability: Gemini faults, deadlines, back-pressure and cancellation (e2e)', () => {
  let app: NestExpressApplication;
  let dataDir: string;
  let http: ReturnType<typeof request>;
  let gemini: GeminiService;
  let emulator: GeminiEmulator;

  beforeAll(async () => {
    dataDir = mkdtempSync(join(tmpdir(), 'his-reliability-'));
    // One Gemini slot and room for two waiting jobs: saturation is three requests away.
    const config = loadConfig(baseEnv(dataDir, { GEMINI_MAX_CONCURRENCY: '1', PIPELINE_MAX_QUEUE: '2' }));
    app = await createApp(config, { logger: false });
    await app.init();
    http = request(app.getHttpServer());
    gemini = app.get(GeminiService);
    emulator = testGemini.emulator;
  });

  afterAll(async () => {
    await app?.close();
    rmSync(dataDir, { recursive: true, force: true });
  });

  beforeEach(() => emulator.resetStats());

  const create = (prompt: string, waitS?: number) => {
    const req = http.post('/api/v1/generations').send({ prompt });
    return waitS ? req.set('Prefer', `wait=${waitS}`) : req;
  };
  const get = async (id: string) => (await http.get(`/api/v1/generations/${id}`).expect(200)).body as Body;
  const untilStage = (id: string, stage: string) =>
    eventually(async () => ((await get(id)).stage === stage ? true : undefined), `generation ${id} to reach stage ${stage}`);
  /** The emulator saw every request end (answered or aborted by the client). */
  const emulatorIdle = () => eventually(() => (emulator.stats().inFlight === 0 ? true : undefined), 'the emulator to have no request in flight');

  it('a hung Gemini call fails GEMINI_TIMEOUT after GEMINI_TIMEOUT_MS, its HTTP request is aborted and its slot freed', async () => {
    // Its own app, with the short timeout this test exercises (one slot, as above).
    const ownDir = mkdtempSync(join(tmpdir(), 'his-reliability-timeout-'));
    const short = await createApp(loadConfig(baseEnv(ownDir, { GEMINI_MAX_CONCURRENCY: '1', GEMINI_TIMEOUT_MS: String(TIMEOUT_MS) })), { logger: false });
    await short.init();
    try {
      const api = request(short.getHttpServer());
      const started = Date.now();
      const g = (await api.post('/api/v1/generations').set('Prefer', 'wait=30').send({ prompt: 'a grey cat [emulator:hang]' }).expect(201)).body as Body;
      const elapsed = Date.now() - started;

      expect(g).toMatchObject({ status: 'failed', images: [], error: { code: 'GEMINI_TIMEOUT' } });
      expect(g.timings.geminiMs).toBeGreaterThanOrEqual(TIMEOUT_MS - 50);
      expect(elapsed).toBeLessThan(TIMEOUT_MS + SLACK_MS);
      // The HTTP request itself was aborted (the emulator saw its client leave), not merely abandoned,
      // and timeouts are not retried.
      await emulatorIdle();
      expect(emulator.stats()).toMatchObject({ requests: 1, clientAborts: 1 });
      expect(short.get(GeminiService).inFlight).toBe(0);
      // With one slot, the next call reaches Gemini only if the hung call gave its slot back. It hangs
      // too, so the short timeout ends it (a normal answer could lose a race against it on a busy box).
      const next = (await api.post('/api/v1/generations').set('Prefer', 'wait=30').send({ prompt: 'a grey dog [emulator:hang]' }).expect(201)).body as Body;
      expect(next).toMatchObject({ status: 'failed', error: { code: 'GEMINI_TIMEOUT' } });
      await emulatorIdle();
      expect(emulator.stats()).toMatchObject({ requests: 2, clientAborts: 2 });
    } finally {
      await short.close();
      rmSync(ownDir, { recursive: true, force: true });
    }
  });

  it('429 once, then success: exactly one retry, after the server’s Retry-After', async () => {
    const g = (await create('a red kite [emulator:429x1]', 30).expect(201)).body as Body;
    expect(g).toMatchObject({ status: 'succeeded', error: null });
    expect(g.images).toHaveLength(1);
    const stats = emulator.stats();
    expect(stats.requests).toBe(2);
    expect(stats.byStatus).toEqual({ 200: 1, 429: 1 });
    // The emulator's 429 says `retryDelay: 1s`: the backoff never waits less than the server asked.
    expect(g.timings.geminiMs).toBeGreaterThanOrEqual(1000);
  });

  it('500 on every attempt: failed GEMINI_ERROR after 1 + GEMINI_MAX_RETRIES attempts', async () => {
    const g = (await create('a broken clock [emulator:500]', 30).expect(201)).body as Body;
    expect(g).toMatchObject({ status: 'failed', images: [], error: { code: 'GEMINI_ERROR' } });
    expect(g.error.message).toContain('500');
    expect(emulator.stats()).toMatchObject({ requests: 2, byStatus: { 500: 2 } });
  });

  it.each([
    ['a safety block', 'GEMINI_BLOCKED', 'something forbidden [emulator:block]'],
    ['a text-only answer', 'GEMINI_NO_IMAGE', 'just words please [emulator:text]'],
  ])('%s fails %s without a retry', async (_name, code, prompt) => {
    const g = (await create(prompt, 30).expect(201)).body as Body;
    expect(g).toMatchObject({ status: 'failed', images: [], error: { code } });
    expect(emulator.stats().requests).toBe(1);
    expect(storedFiles(dataDir, g.id)).toEqual([]);
  });

  it('queue full → 429 QUEUE_FULL with Retry-After, while health and reads stay responsive', async () => {
    const running = (await create('a slow turtle [emulator:hang]').expect(202)).body as Body;
    await untilStage(running.id, 'gemini');
    const waiting = [
      (await create('a patient snail [emulator:hang]').expect(202)).body as Body,
      (await create('a patient sloth [emulator:hang]').expect(202)).body as Body,
    ];
    expect(waiting.map((w) => w.status)).toEqual(['queued', 'queued']);

    const refused = await create('one too many').expect(429);
    expect(refused.body).toEqual({ statusCode: 429, code: 'QUEUE_FULL', message: expect.any(String) });
    expect(Number(refused.headers['retry-after'])).toBeGreaterThanOrEqual(1);

    // Gemini is saturated; the API is not.
    await http.get('/health/live').expect(200);
    const ready = await http.get('/health/ready').expect(200);
    expect(ready.body.status).toBe('ok');
    await http.get('/api/v1/generations?limit=5').expect(200);
    expect((await get(running.id)).status).toBe('running');

    // Canceling a queued job makes room again.
    const canceled = (await http.post(`/api/v1/generations/${waiting[0].id}/cancel`).expect(200)).body as Body;
    expect(canceled).toMatchObject({ status: 'canceled', error: { code: 'CANCELED' }, startedAt: null });
    const admitted = (await create('now there is room [emulator:hang]').expect(202)).body as Body;

    for (const g of [waiting[1], admitted, running]) await http.post(`/api/v1/generations/${g.id}/cancel`).expect(200);
    await emulatorIdle();
    expect(gemini.inFlight).toBe(0);
    expect(gemini.waiting).toBe(0);
    // Only the running job ever reached Gemini; its request was aborted by the cancel.
    expect(emulator.stats()).toMatchObject({ requests: 1, clientAborts: 1 });
  });

  it('a burst of concurrent requests cannot overshoot PIPELINE_MAX_QUEUE', async () => {
    const running = (await create('a busy bee [emulator:hang]').expect(202)).body as Body;
    await untilStage(running.id, 'gemini');
    const burst = await Promise.all(Array.from({ length: 10 }, (_, i) => create(`burst ${i} [emulator:hang]`)));
    const accepted = burst.filter((r) => r.status === 202);
    expect(accepted).toHaveLength(2);
    expect(burst.filter((r) => r.status === 429)).toHaveLength(8);
    expect(await app.get(JobQueue).waiting()).toBe(2);

    for (const g of [...accepted.map((r) => r.body as Body), running]) await http.post(`/api/v1/generations/${g.id}/cancel`).expect(200);
    await emulatorIdle();
    expect(gemini.inFlight).toBe(0);
  });

  it('cancel aborts the in-flight Gemini call: the slot is freed and nothing is uploaded afterwards', async () => {
    // The answer would arrive 600 ms in; cancel lands well before that.
    const { body } = await create('a blue whale [emulator:latency=600]').expect(202);
    await untilStage(body.id, 'gemini');
    const canceled = (await http.post(`/api/v1/generations/${body.id}/cancel`).expect(200)).body as Body;
    expect(canceled).toMatchObject({ status: 'canceled', stage: 'gemini', images: [], error: { code: 'CANCELED' } });
    expect(gemini.inFlight).toBe(0);
    await emulatorIdle();
    expect(emulator.stats()).toMatchObject({ requests: 1, clientAborts: 1, byOutcome: { image: 0 } });

    await sleep(800); // past the moment the answer would have come
    expect(storedFiles(dataDir, body.id)).toEqual([]);
    expect(await get(body.id)).toMatchObject({ status: 'canceled', images: [] });
    await http.get(`/api/v1/generations/${body.id}/images/0`).expect(404);
    await http.post(`/api/v1/generations/${body.id}/cancel`).expect(409);
  });

  it('Prefer: wait is bounded: 202 with the current state when the wait runs out, and N is capped at 60', async () => {
    // wait=1 s runs out long before the hung call's (generous) timeout.
    const started = Date.now();
    const res = await create('a very slow painter [emulator:hang]', 1).expect(202);
    expect(Date.now() - started).toBeLessThan(1000 + SLACK_MS);
    expect(res.headers['preference-applied']).toBe('wait=1');
    expect(res.body.status).toBe('running');
    await http.post(`/api/v1/generations/${res.body.id}/cancel`).expect(200);

    const capped = await create('a quick sketch', 3600).expect(201);
    expect(capped.headers['preference-applied']).toBe('wait=60');
    expect(capped.body.status).toBe('succeeded');
  });
});

describe('Reliability: the job deadline bounds all Gemini attempts together (e2e)', () => {
  let app: NestExpressApplication;
  let dataDir: string;

  beforeAll(async () => {
    dataDir = mkdtempSync(join(tmpdir(), 'his-deadline-'));
    // Ten retries allowed, but only 2.5 s for all of them; each 503 asks for a 1 s pause.
    const config = loadConfig(baseEnv(dataDir, { GEMINI_MAX_RETRIES: '10', GEMINI_JOB_DEADLINE_MS: '2500' }));
    app = await createApp(config, { logger: false });
    await app.init();
  });

  afterAll(async () => {
    await app?.close();
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('stops retrying when the next attempt would not fit before the deadline', async () => {
    const { emulator } = testGemini;
    emulator.resetStats();
    const res = await request(app.getHttpServer())
      .post('/api/v1/generations')
      .set('Prefer', 'wait=30')
      .send({ prompt: 'an overloaded model [emulator:503]' })
      .expect(201);
    expect(res.body).toMatchObject({ status: 'failed', error: { code: 'GEMINI_ERROR' } });
    expect(res.body.error.message).toContain('503');
    expect(res.body.timings.geminiMs).toBeLessThanOrEqual(2500 + SLACK_MS);
    const { requests } = emulator.stats();
    expect(requests).toBeGreaterThanOrEqual(2);
    expect(requests).toBeLessThan(11);
  });
});

describe('Reliability: Gemini unreachable at the network level (e2e)', () => {
  let app: NestExpressApplication;
  let dataDir: string;
  let dropper: Server;
  let connections = 0;

  beforeAll(async () => {
    // Accepts each TCP connection and drops it at once: what a crashing proxy or a reset looks like.
    dropper = createServer((socket) => {
      connections++;
      socket.destroy();
    });
    await new Promise<void>((done) => dropper.listen(0, '127.0.0.1', done));
    dataDir = mkdtempSync(join(tmpdir(), 'his-network-'));
    const { port } = dropper.address() as AddressInfo;
    const config = loadConfig(baseEnv(dataDir, { GEMINI_BASE_URL: `http://127.0.0.1:${port}` }));
    app = await createApp(config, { logger: false });
    await app.init();
  });

  afterAll(async () => {
    await app?.close();
    await new Promise((done) => dropper?.close(done));
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('a dropped connection is retried once, then the generation fails GEMINI_ERROR; readiness does not depend on Gemini', async () => {
    const http = request(app.getHttpServer());
    const res = await http.post('/api/v1/generations').set('Prefer', 'wait=30').send({ prompt: 'a lost letter' }).expect(201);
    expect(res.body).toMatchObject({ status: 'failed', images: [], error: { code: 'GEMINI_ERROR' } });
    expect(res.body.error.message).toMatch(/Could not reach Gemini/);
    expect(connections).toBe(2);
    // A Gemini outage is not this instance's fault: taking it out of rotation would not help.
    await http.get('/health/ready').expect(200);
  });
});

/**
 * The real palette worker behind a thin wrapper driven by trigger files, so faults happen on
 * demand: while `stall` exists every task waits (a saturated pool); when `crash` exists the next
 * task deletes it and kills its own thread (process.exit in a worker ends that thread).
 */
function faultyWorker(dir: string, triggers: { crash: string; stall: string }): string {
  const file = join(dir, 'faulty-palette.worker.mjs');
  const realWorker = pathToFileURL(resolveWorkerFile(join(__dirname, '..', '..', 'src', 'palette'))).href;
  writeFileSync(
    file,
    `import { existsSync, unlinkSync } from 'node:fs';
import paletteTask from ${JSON.stringify(realWorker)};
export default async function faultOnDemand(task) {
  while (existsSync(${JSON.stringify(triggers.stall)})) await new Promise((resolve) => setTimeout(resolve, 10));
  if (existsSync(${JSON.stringify(triggers.crash)})) {
    unlinkSync(${JSON.stringify(triggers.crash)});
    process.exit(3);
  }
  return paletteTask(task);
}
`,
  );
  return file;
}

describe('Reliability: a crashed or saturated palette pool (e2e)', () => {
  let app: NestExpressApplication;
  let dataDir: string;
  let triggers: { crash: string; stall: string };
  let http: ReturnType<typeof request>;
  let png: Buffer;

  beforeAll(async () => {
    dataDir = mkdtempSync(join(tmpdir(), 'his-palette-faults-'));
    triggers = { crash: join(dataDir, 'crash-next-task'), stall: join(dataDir, 'stall-tasks') };
    const workerFile = faultyWorker(dataDir, triggers);
    // One worker and one waiting task: the third concurrent palette is refused.
    const config = loadConfig(baseEnv(dataDir, { PALETTE_MAX_QUEUE: '1' }));
    // The whole app; only the palette pool runs the wrapper above instead of the bare worker.
    const moduleRef = await Test.createTestingModule({ imports: [AppModule.forRoot(config)] })
      .overrideProvider(PaletteService)
      .useFactory({ factory: (c: AppConfig, m: AppMetrics) => new PaletteService(c, m, workerFile), inject: [AppConfig, AppMetrics] })
      .compile();
    app = moduleRef.createNestApplication<NestExpressApplication>({ bodyParser: false, logger: false });
    configureApp(app, config);
    await app.init();
    http = request(app.getHttpServer());
    png = await referenceImage('png', { width: 64, height: 64 });
  });

  afterAll(async () => {
    await app?.close();
    rmSync(dataDir, { recursive: true, force: true });
  });

  const crashNextTask = () => writeFileSync(triggers.crash, '');
  const postPalette = () => http.post('/api/v1/palettes').attach('image', png, 'a.png');

  it('POST /palettes: the crashed task answers 500 PALETTE_ERROR, the pool replaces the thread and serves the next', async () => {
    crashNextTask();
    const failed = await http.post('/api/v1/palettes').attach('image', png, 'a.png').expect(500);
    expect(failed.body).toEqual({ statusCode: 500, code: 'PALETTE_ERROR', message: 'The palette could not be extracted' });
    expect(existsSync(triggers.crash)).toBe(false);

    const ok = await http.post('/api/v1/palettes').attach('image', png, 'a.png').expect(200);
    expect(ok.body.colors.length).toBeGreaterThan(0);
    const ready = await http.get('/health/ready').expect(200);
    expect(ready.body.details.palette).toMatchObject({ status: 'up', workers: 1 });
  });

  it('a generation whose palette worker crashes fails PALETTE_ERROR and leaves no orphan image; the next one succeeds', async () => {
    crashNextTask();
    const failed = (await http.post('/api/v1/generations').set('Prefer', 'wait=30').send({ prompt: 'a red square' }).expect(201)).body as Body;
    expect(failed).toMatchObject({ status: 'failed', images: [], error: { code: 'PALETTE_ERROR' } });
    // The image was uploaded before the palette stage; with no record pointing at it, it is gone.
    expect(storedFiles(dataDir, failed.id)).toEqual([]);

    const next = (await http.post('/api/v1/generations').set('Prefer', 'wait=30').send({ prompt: 'a red square' }).expect(201)).body as Body;
    expect(next.status).toBe('succeeded');
    expect(storedFiles(dataDir, next.id)).toHaveLength(1);
  });

  it('a saturated pool refuses with 503 PALETTE_BUSY + Retry-After and readiness says so, while liveness and reads answer', async () => {
    writeFileSync(triggers.stall, '');
    const accepted = [postPalette(), postPalette()].map((req) => new Promise<request.Response>((resolve, reject) => req.end((e, r) => (e ? reject(e) : resolve(r)))));
    await eventually(async () => {
      const ready = await http.get('/health/ready');
      return ready.status === 503 ? ready : undefined;
    }, 'readiness to report the full palette queue').then((ready) => {
      expect(ready.body.details.palette).toMatchObject({ status: 'down', queued: 1 });
      expect(ready.body.code).toBe('NOT_READY');
    });

    const refused = await postPalette().expect(503);
    expect(refused.body).toEqual({ statusCode: 503, code: 'PALETTE_BUSY', message: expect.any(String) });
    expect(Number(refused.headers['retry-after'])).toBeGreaterThanOrEqual(1);
    await http.get('/health/live').expect(200);
    await http.get('/api/v1/generations?limit=1').expect(200);

    unlinkSync(triggers.stall);
    for (const res of await Promise.all(accepted)) expect(res.status).toBe(200);
    await http.get('/health/ready').expect(200);
  });

  it('a saturated pool makes admitted generations wait (not fail) and refuses new ones with 429 QUEUE_FULL until it drains', async () => {
    writeFileSync(triggers.stall, '');
    // Fill the pool: one task running (stalled), one queued (PALETTE_MAX_QUEUE=1).
    const uploads = [postPalette(), postPalette()].map((req) => new Promise<request.Response>((resolve, reject) => req.end((e, r) => (e ? reject(e) : resolve(r)))));
    const palette = app.get(PaletteService);
    await eventually(() => (palette.stats().queued === 1 ? true : undefined), 'the palette queue to fill');

    // Two generations get their images from Gemini, store them and then wait for room in the queue.
    const ids = await Promise.all([1, 2].map(async () => ((await http.post('/api/v1/generations').send({ prompt: 'a blue square' }).expect(202)).body as Body).id as string));
    await eventually(() => (palette.stats().waiting === 2 ? true : undefined), 'both images to wait for the palette queue');
    for (const id of ids) expect((await http.get(`/api/v1/generations/${id}`).expect(200)).body).toMatchObject({ status: 'running', stage: 'palette' });

    // Meanwhile a new generation would only add to that wait: refused, with a hint when to come back.
    const refused = await http.post('/api/v1/generations').send({ prompt: 'one more' }).expect(429);
    expect(refused.body).toMatchObject({ statusCode: 429, code: 'QUEUE_FULL', message: expect.stringMatching(/palette/) });
    expect(Number(refused.headers['retry-after'])).toBeGreaterThanOrEqual(1);
    expect(app.get(JobQueue).active).toBe(2);

    unlinkSync(triggers.stall);
    for (const res of await Promise.all(uploads)) expect(res.status).toBe(200);
    for (const id of ids) {
      const done = await eventually(async () => {
        const body = (await http.get(`/api/v1/generations/${id}`).expect(200)).body as Body;
        return body.status === 'running' || body.status === 'queued' ? undefined : body;
      }, `generation ${id} to finish`);
      expect(done).toMatchObject({ status: 'succeeded', images: [{ palette: expect.arrayContaining([expect.objectContaining({ hex: expect.any(String) })]) }] });
      expect(storedFiles(dataDir, id)).toHaveLength(1);
    }
    expect(palette.stats()).toMatchObject({ queued: 0, waiting: 0 });
    await http.post('/api/v1/generations').set('Prefer', 'wait=30').send({ prompt: 'admitted again' }).expect(201);
  });

  afterEach(() => {
    for (const file of Object.values(triggers)) if (existsSync(file)) unlinkSync(file);
  });
});
