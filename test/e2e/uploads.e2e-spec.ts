/**
 * Image uploads through the real app (issues 4 and 6 of the security review): uploads stream to
 * temporary files that are removed after success, failure and client abort; the bytes of uploads in
 * flight are bounded (UPLOAD_MAX_INFLIGHT_MB, a low value here) with `503 UPLOADS_BUSY` +
 * `Retry-After` past the bound; a client that goes away aborts its palette task, queued or running;
 * a task past PALETTE_TASK_TIMEOUT_MS answers `503 PALETTE_TIMEOUT`. The palette pool runs the real
 * worker behind a wrapper that hangs on demand (palette size 7) and logs every task it starts.
 */
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request as httpRequest, type ClientRequest, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { NestExpressApplication } from '@nestjs/platform-express';
import { Test } from '@nestjs/testing';
import request from 'supertest';
import { configureApp } from '../../src/app.factory';
import { AppModule } from '../../src/app.module';
import { AppConfig, loadConfig } from '../../src/config/app-config';
import { PaletteService, resolveWorkerFile } from '../../src/palette/palette.service';
import { AppMetrics } from '../../src/telemetry/app-metrics';
import { UploadsService } from '../../src/uploads/uploads.service';
import { startTestGemini, type TestGemini } from '../support/gemini-emulator';
import { referenceImage } from '../support/images';

const HANG_SIZE = 7;
const PALETTES = '/api/v1/palettes';

/** The real worker, except that a task of palette size 7 never finishes; every task logs `start <size>` first. */
function hangingWorker(dir: string, log: string): string {
  const file = join(dir, 'hanging-palette.worker.mjs');
  const realWorker = pathToFileURL(resolveWorkerFile(join(__dirname, '..', '..', 'src', 'palette'))).href;
  writeFileSync(
    file,
    `import { appendFileSync } from 'node:fs';
import paletteTask from ${JSON.stringify(realWorker)};
export default async function hangOnDemand(task) {
  appendFileSync(${JSON.stringify(log)}, 'start ' + task.size + '\\n');
  if (task.size === ${HANG_SIZE}) await new Promise(() => {});
  return paletteTask(task);
}
`,
  );
  return file;
}

/** Polls `check` until it returns a value other than undefined (server-side clean-up is asynchronous). */
async function eventually<T>(check: () => T | undefined, what: string): Promise<T> {
  for (let i = 0; i < 1000; i++) {
    const value = check();
    if (value !== undefined) return value;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  throw new Error(`timed out waiting for ${what}`);
}

const BOUNDARY = 'uploads-e2e-boundary';

/** A multipart body with the image and the `size` field, as a browser would send it. */
function multipart(image: Buffer, size?: number): Buffer {
  const parts: Buffer[] = [];
  if (size !== undefined) parts.push(Buffer.from(`--${BOUNDARY}\r\nContent-Disposition: form-data; name="size"\r\n\r\n${size}\r\n`));
  parts.push(Buffer.from(`--${BOUNDARY}\r\nContent-Disposition: form-data; name="image"; filename="a.png"\r\nContent-Type: image/png\r\n\r\n`));
  parts.push(image, Buffer.from(`\r\n--${BOUNDARY}--\r\n`));
  return Buffer.concat(parts);
}

interface RawUpload {
  req: ClientRequest;
  /** The answer; rejects if the connection is destroyed first. */
  response: Promise<{ status: number; body: Record<string, unknown>; headers: IncomingMessage['headers'] }>;
}

/** POSTs `body` over a raw connection, sending only its first `sendBytes` bytes (all by default). */
function rawUpload(port: number, body: Buffer, sendBytes = body.length): RawUpload {
  const req = httpRequest({
    host: '127.0.0.1',
    port,
    method: 'POST',
    path: PALETTES,
    headers: { 'content-type': `multipart/form-data; boundary=${BOUNDARY}`, 'content-length': body.length },
  });
  const response = new Promise<{ status: number; body: Record<string, unknown>; headers: IncomingMessage['headers'] }>((resolve, reject) => {
    req.on('error', reject);
    req.on('response', (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (text += chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) as Record<string, unknown>, headers: res.headers }));
    });
  });
  response.catch(() => undefined);
  req.write(body.subarray(0, sendBytes));
  if (sendBytes >= body.length) req.end();
  return { req, response };
}

async function startApp(dir: string, env: Record<string, string>) {
  const tmpDir = join(dir, 'uploads');
  const log = join(dir, 'tasks.log');
  writeFileSync(log, '');
  const config = loadConfig({
    ...testGemini.env,
    DATA_DIR: join(dir, 'data'),
    UPLOAD_TMP_DIR: tmpDir,
    METRICS_PORT: '0',
    OTEL_SDK_DISABLED: 'true',
    LOG_LEVEL: 'silent',
    PALETTE_WORKERS: '1',
    ...env,
  });
  const workerFile = hangingWorker(dir, log);
  const moduleRef = await Test.createTestingModule({ imports: [AppModule.forRoot(config)] })
    .overrideProvider(PaletteService)
    .useFactory({ factory: (c: AppConfig, m: AppMetrics) => new PaletteService(c, m, workerFile), inject: [AppConfig, AppMetrics] })
    .compile();
  const app = moduleRef.createNestApplication<NestExpressApplication>({ bodyParser: false, logger: false });
  configureApp(app, config);
  await app.listen(0, '127.0.0.1');
  const port = (app.getHttpServer().address() as AddressInfo).port;
  return {
    app,
    port,
    tmpDir,
    http: request(app.getHttpServer()),
    uploads: app.get(UploadsService),
    palette: app.get(PaletteService),
    tasksStarted: () => readFileSync(log, 'utf8').split('\n').filter(Boolean),
    tempFiles: () => (existsSync(tmpDir) ? readdirSync(tmpDir) : []),
  };
}

/** The bundled Gemini emulator, reached by this file's apps through GEMINI_BASE_URL. */
let testGemini: TestGemini;
beforeAll(async () => {
  testGemini = await startTestGemini();
});
afterAll(async () => {
  await testGemini?.close();
});

describe('Uploads: temporary files, the in-flight bound and client aborts (e2e)', () => {
  let dir: string;
  let s: Awaited<ReturnType<typeof startApp>>;
  let image: Buffer;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'his-uploads-'));
    // 1 MB in flight: two uploads of ~0.6 MB do not fit together.
    s = await startApp(dir, { UPLOAD_MAX_INFLIGHT_MB: '1' });
    image = await referenceImage('png', { width: 420, height: 420, noise: 40, seed: 5 });
  });

  afterAll(async () => {
    await s?.app.close();
    rmSync(dir, { recursive: true, force: true });
  });

  /** Nothing left behind: no temporary file, no reserved byte. */
  const settled = () => eventually(() => (s.tempFiles().length === 0 && s.uploads.stats().uploads === 0 ? true : undefined), 'uploads to be cleaned up');

  it('uses an image between half and all of the bound, so that exactly one fits', () => {
    const body = multipart(image).length;
    expect(body).toBeGreaterThan(512 * 1024);
    expect(body).toBeLessThan(1024 * 1024);
  });

  it('streams the upload to a temporary file while it arrives, answers the palette, then removes the file', async () => {
    const body = multipart(image, 3);
    const upload = rawUpload(s.port, body, body.length - 1000);
    const [file] = await eventually(() => (s.tempFiles().length === 1 ? s.tempFiles() : undefined), 'the temporary file');
    expect(file).toMatch(/^upload-[0-9a-f-]{36}$/);
    upload.req.end(body.subarray(body.length - 1000));
    const res = await upload.response;
    expect(res.status).toBe(200);
    expect((res.body.colors as unknown[]).length).toBe(3);
    await settled();
  });

  it.each<[string, number, string, () => request.Test]>([
    ['not an image', 415, 'UNSUPPORTED_IMAGE', () => s.http.post(PALETTES).attach('image', Buffer.from('plain text, not an image'), 'a.png')],
    ['a bad size field', 400, 'VALIDATION_FAILED', () => s.http.post(PALETTES).field('size', 'abc').attach('image', image, 'a.png')],
    ['two files', 400, 'INVALID_MULTIPART', () => s.http.post(PALETTES).attach('image', image, 'a.png').attach('image', image, 'b.png')],
  ])('removes the temporary file when the request fails: %s → %i %s', async (_name, status, code, send) => {
    const res = await send();
    expect({ status: res.status, code: res.body.code }).toEqual({ status, code });
    await settled();
  });

  it('refuses a body declaring more than an image may be at once, before reading it → 413 PAYLOAD_TOO_LARGE', async () => {
    const upload = rawUpload(s.port, Buffer.alloc(22 * 1024 * 1024), 1024);
    const res = await upload.response;
    upload.req.destroy();
    expect(res).toMatchObject({ status: 413, body: { code: 'PAYLOAD_TOO_LARGE' } });
    expect(s.tempFiles()).toEqual([]);
    await settled();
  });

  it('a client that disconnects mid-upload leaves no temporary file and no reserved bytes', async () => {
    const body = multipart(image);
    const upload = rawUpload(s.port, body, Math.floor(body.length / 2));
    await eventually(() => (s.tempFiles().length === 1 ? true : undefined), 'the upload to reach the disk');
    expect(s.uploads.stats().uploads).toBe(1);
    upload.req.destroy();
    await settled();
  });

  it('past UPLOAD_MAX_INFLIGHT_MB answers 503 UPLOADS_BUSY with Retry-After, and admits again once the bytes come back', async () => {
    const body = multipart(image, 3);
    const first = rawUpload(s.port, body, body.length - 1000);
    await eventually(() => (s.uploads.stats().uploads === 1 ? true : undefined), 'the first upload to be admitted');

    const refused = await s.http.post(PALETTES).attach('image', image, 'b.png');
    expect(refused.status).toBe(503);
    expect(refused.body).toEqual({ statusCode: 503, code: 'UPLOADS_BUSY', message: 'Too many uploads are in progress; retry later' });
    expect(Number(refused.headers['retry-after'])).toBeGreaterThanOrEqual(1);
    // The refused upload never reached the disk: only the first one's file is there.
    expect(s.tempFiles()).toHaveLength(1);
    await s.http.get('/health/live').expect(200);

    first.req.end(body.subarray(body.length - 1000));
    expect((await first.response).status).toBe(200);
    await settled();
    const again = await s.http.post(PALETTES).attach('image', image, 'b.png');
    expect(again.status).toBe(200);
    await settled();
  });

  it('a client that goes away while its palette task runs aborts the task (its thread is ended) and leaves nothing behind', async () => {
    const upload = rawUpload(s.port, multipart(image, HANG_SIZE));
    await eventually(() => (s.tasksStarted().includes(`start ${HANG_SIZE}`) ? true : undefined), 'the task to start');
    expect(s.palette.stats().busy).toBe(1);
    upload.req.destroy();
    // The task would hang for ever: the pool is free again only because it was aborted.
    await eventually(() => (s.palette.stats().busy === 0 ? true : undefined), 'the running task to be aborted');
    await settled();
    const next = await s.http.post(PALETTES).field('size', '2').attach('image', await referenceImage('png', { width: 32, height: 32 }), 'a.png');
    expect(next.status).toBe(200);
  });

  it('a client that goes away while its palette task waits in the queue drops the task: it never runs', async () => {
    const small = await referenceImage('png', { width: 32, height: 32 });
    const blocker = rawUpload(s.port, multipart(small, HANG_SIZE));
    await eventually(() => (s.palette.stats().busy === 1 ? true : undefined), 'the blocking task to run');
    const queued = rawUpload(s.port, multipart(small, 9));
    await eventually(() => (s.palette.stats().queued === 1 ? true : undefined), 'the second task to queue');
    queued.req.destroy();
    await eventually(() => (s.palette.stats().queued === 0 ? true : undefined), 'the queued task to be dropped');
    blocker.req.destroy();
    await eventually(() => (s.palette.stats().busy === 0 ? true : undefined), 'the blocking task to be aborted');
    await settled();
    // A task started after all that runs, and the dropped one never started.
    const next = await s.http.post(PALETTES).field('size', '4').attach('image', small, 'a.png');
    expect(next.status).toBe(200);
    expect(s.tasksStarted().filter((line) => line === 'start 9')).toEqual([]);
    expect(s.tasksStarted().at(-1)).toBe('start 4');
  });
});

describe('Uploads: the palette task time limit (e2e)', () => {
  let dir: string;
  let s: Awaited<ReturnType<typeof startApp>>;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'his-uploads-timeout-'));
    s = await startApp(dir, { PALETTE_TASK_TIMEOUT_MS: '100' });
  });

  afterAll(async () => {
    await s?.app.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('a task past PALETTE_TASK_TIMEOUT_MS answers 503 PALETTE_TIMEOUT with Retry-After, and frees its worker', async () => {
    const small = await referenceImage('png', { width: 32, height: 32 });
    const res = await s.http.post(PALETTES).field('size', String(HANG_SIZE)).attach('image', small, 'a.png');
    expect(res.status).toBe(503);
    expect(res.body).toEqual({ statusCode: 503, code: 'PALETTE_TIMEOUT', message: 'The palette took longer than 100 ms; retry later' });
    expect(Number(res.headers['retry-after'])).toBeGreaterThanOrEqual(1);
    await eventually(() => (s.tempFiles().length === 0 && s.uploads.stats().uploads === 0 ? true : undefined), 'clean-up');
    // The hung task would hold the only worker for ever: it was ended, and the pool has its thread back.
    await eventually(() => (s.palette.stats().busy === 0 && s.palette.stats().workers === 1 ? true : undefined), 'the worker to be freed');
  });
});
