import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import type { NestExpressApplication } from '@nestjs/platform-express';
import request from 'supertest';
import { createApp } from '../../src/app.factory';
import { loadConfig } from '../../src/config/app-config';
import { startS3rver, useS3rverCredentials } from '../support/s3rver';
import type { S3rverHandle } from '../support/s3rver';
import { startTestGemini, type TestGemini } from '../support/gemini-emulator';

type Body = Record<string, any>;

/** Polls `check` until it returns a value other than undefined, or fails after `timeoutMs`. */
async function eventually<T>(check: () => Promise<T | undefined>, what: string, timeoutMs = 15_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** The bundled Gemini emulator, reached by this file's apps through GEMINI_BASE_URL. */
let testGemini: TestGemini;
beforeAll(async () => {
  testGemini = await startTestGemini();
});
afterAll(async () => {
  await testGemini?.close();
});

/**
 * The real app storing images in a real S3-protocol server (s3rver), which the test stops and
 * restarts: an outage must fail generations cleanly with STORAGE_ERROR and take readiness down,
 * and everything must work again once the bucket is back.
 */
describe('Storage faults: the S3 server goes away and comes back (integration)', () => {
  let s3: S3rverHandle;
  let app: NestExpressApplication;
  let dataDir: string;
  let http: ReturnType<typeof request>;
  let before: Body;
  /** The generation that failed during the outage. */
  let failedId: string;

  beforeAll(async () => {
    useS3rverCredentials();
    s3 = await startS3rver({ bucket: 'fault-images' });
    dataDir = mkdtempSync(join(tmpdir(), 'his-storage-faults-'));
    const config = loadConfig({
      ...testGemini.env,
      DATA_DIR: dataDir,
      METRICS_PORT: '0',
      OTEL_SDK_DISABLED: 'true',
      LOG_LEVEL: 'silent',
      PALETTE_WORKERS: '1',
      GEMINI_TIMEOUT_MS: '3000',
      S3_BUCKET: s3.bucket,
      S3_ENDPOINT: s3.endpoint,
      S3_FORCE_PATH_STYLE: 'true',
    });
    app = await createApp(config, { logger: false });
    await app.init();
    http = request(app.getHttpServer());
  });

  afterAll(async () => {
    await app?.close();
    await s3?.dispose();
    rmSync(dataDir, { recursive: true, force: true });
  });

  const generate = async (prompt: string) =>
    (await http.post('/api/v1/generations').set('Prefer', 'wait=30').send({ prompt }).expect(201)).body as Body;
  /** Objects s3rver holds for generation `id` (it keeps one folder per key under the bucket). */
  const objectsOf = (id: string) => {
    const bucketDir = join(s3.directory, s3.bucket);
    if (!existsSync(bucketDir)) return [];
    return (readdirSync(bucketDir, { recursive: true }) as string[]).filter((p) => p.includes(id) && /\d\.png/.test(p));
  };

  it('with the bucket up: generations land in S3, images are served, readiness is up', async () => {
    before = await generate('a green hill');
    expect(before.status).toBe('succeeded');
    expect(objectsOf(before.id).length).toBeGreaterThan(0);
    const image = await http.get(before.images[0].url).buffer(true).expect(200).expect('content-type', 'image/png');
    expect((image.body as Buffer).length).toBe(before.images[0].bytes);
    const ready = await http.get('/health/ready').expect(200);
    expect(ready.body.details.storage).toEqual({ status: 'up', driver: 's3' });
  });

  it('with the bucket down: readiness 503 (storage down), generations fail STORAGE_ERROR with no image, reads of images 503', async () => {
    await s3.stop();

    // Readiness probes are cached for STORAGE_CHECK_TTL_MS: the outage shows within that.
    const ready = await eventually(async () => {
      const res = await http.get('/health/ready');
      return res.status === 503 ? res : undefined;
    }, 'readiness to turn 503');
    expect(ready.body).toMatchObject({ statusCode: 503, code: 'NOT_READY', details: { storage: { status: 'down', driver: 's3' } } });
    expect(ready.body.details.database.status).toBe('up');
    await http.get('/health/live').expect(200);

    const failed = await generate('a green valley');
    expect(failed).toMatchObject({ status: 'failed', stage: 'upload', images: [], error: { code: 'STORAGE_ERROR' } });
    expect(failed.timings.uploadMs).toBeGreaterThan(0);
    expect(failed.error.message).not.toMatch(/S3RVER|Signature=|Credential=/);

    // Records stay readable (they live in the database); image bytes do not.
    expect((await http.get(`/api/v1/generations/${before.id}`).expect(200)).body.status).toBe('succeeded');
    const image = await http.get(before.images[0].url).expect(503);
    expect(image.body).toEqual({ statusCode: 503, code: 'STORAGE_ERROR', message: expect.any(String) });
    failedId = failed.id;
  });

  it('with the bucket back: readiness recovers and generations succeed again; the failed one left nothing behind', async () => {
    await s3.restart();
    await eventually(async () => ((await http.get('/health/ready')).status === 200 ? true : undefined), 'readiness to recover');

    const after = await generate('a green meadow');
    expect(after.status).toBe('succeeded');
    expect(objectsOf(after.id).length).toBeGreaterThan(0);
    await http.get(after.images[0].url).expect(200);
    await http.get(before.images[0].url).expect(200);
    expect(objectsOf(failedId)).toEqual([]);
  });
});

describe('Storage faults: an S3 endpoint that accepts connections and never answers (integration)', () => {
  let app: NestExpressApplication;
  let dataDir: string;
  let blackhole: Server;
  const held = new Set<Socket>();

  beforeAll(async () => {
    useS3rverCredentials();
    blackhole = createServer((socket) => {
      held.add(socket);
      // Read and drop what arrives (a paused socket would never notice the client hanging up).
      socket.resume();
      socket.on('close', () => held.delete(socket));
    });
    await new Promise<void>((done) => blackhole.listen(0, '127.0.0.1', done));
    dataDir = mkdtempSync(join(tmpdir(), 'his-storage-blackhole-'));
    const config = loadConfig({
      ...testGemini.env,
      DATA_DIR: dataDir,
      METRICS_PORT: '0',
      OTEL_SDK_DISABLED: 'true',
      LOG_LEVEL: 'silent',
      PALETTE_WORKERS: '1',
      S3_BUCKET: 'silent-bucket',
      S3_ENDPOINT: `http://127.0.0.1:${(blackhole.address() as AddressInfo).port}`,
      S3_FORCE_PATH_STYLE: 'true',
    });
    app = await createApp(config, { logger: false });
    await app.init();
  });

  afterAll(async () => {
    await app?.close();
    for (const socket of held) socket.destroy();
    await new Promise((done) => blackhole?.close(done));
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('readiness gives up after its storage timeout and answers 503, while liveness answers at once', async () => {
    const http = request(app.getHttpServer());
    const started = Date.now();
    const ready = http.get('/health/ready');
    await http.get('/health/live').expect(200);
    const res = await ready.expect(503);
    const elapsed = Date.now() - started;
    expect(res.body.details.storage).toEqual({ status: 'down', driver: 's3', message: expect.stringContaining('timed out after 2000 ms') });
    // Bounded by the check's own 2 s timeout (plus scheduling slack), not by the S3 client's 30 s.
    expect(elapsed).toBeGreaterThanOrEqual(1900);
    // Generous: only shows the storage check's bound fired, not a default of minutes.
    expect(elapsed).toBeLessThan(2000 + 10_000);
  });

  it('a generation stuck uploading can be canceled: the upload is aborted, the record says canceled', async () => {
    const http = request(app.getHttpServer());
    const { body } = await http.post('/api/v1/generations').send({ prompt: 'a message in a bottle' }).expect(202);
    await eventually(async () => ((await http.get(`/api/v1/generations/${body.id}`)).body.stage === 'upload' ? true : undefined), 'the upload stage');
    const heldBefore = held.size;
    expect(heldBefore).toBeGreaterThan(0);
    // The S3 client's own timeouts would take minutes; the cancel must not wait for them.
    const canceled = await http.post(`/api/v1/generations/${body.id}/cancel`).timeout(10_000).expect(200);
    expect(canceled.body).toMatchObject({ status: 'canceled', stage: 'upload', images: [], error: { code: 'CANCELED' } });
    // A canceled record keeps its queue and total times; the stage times belong to finished images.
    expect(canceled.body.timings.totalMs).toBeGreaterThan(0);
    // The client hung up: the upload (and the bounded clean-up attempt) were aborted, not abandoned.
    await eventually(async () => (held.size === 0 ? true : undefined), 'the S3 connections to close');
  });
});
