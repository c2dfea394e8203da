/**
 * The OpenAPI document at /docs-json against the service's real answers (issue 14, items 3 and 4).
 * Real apps are driven to produce every status the document lists for every operation, and each
 * answer is checked with ajv against the document: status, media type, body schema, headers. At the
 * end, every documented (operation, status) must have been produced: a status documented but
 * never answered fails, as does an answer the document does not describe. The document itself is
 * checked too: security on every /api operation, examples valid against their own schemas,
 * integers typed integer, and every error code the source throws listed.
 *
 * Apps: `main` (API keys; the palette pool behind a wrapper that crashes on demand; a 1 MB upload
 * budget), `limited` (RATE_LIMIT_PER_MINUTE=1), `damaged` (a database with a damaged generation
 * page and a damaged reference page), and `presign` (images on s3rver, answered with 302). The
 * generation, palette, reference and search routes are all driven.
 */
import { closeSync, existsSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { request as httpRequest, type ClientRequest } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { NestExpressApplication } from '@nestjs/platform-express';
import { Test } from '@nestjs/testing';
import { configureApp, createApp } from '../../src/app.factory';
import { AppModule } from '../../src/app.module';
import { Generation, newQueuedGeneration } from '../../src/common/generation.model';
import type { Reference } from '../../src/common/reference.model';
import { newGenerationId } from '../../src/common/ids';
import { AppConfig, loadConfig } from '../../src/config/app-config';
import { createDatabase, databaseFile } from '../../src/database/database';
import { GenerationsRepository } from '../../src/database/generations.repository';
import { ReferencesRepository } from '../../src/database/references.repository';
import { ShutdownState } from '../../src/health/shutdown-state';
import { PaletteService, resolveWorkerFile } from '../../src/palette/palette.service';
import { PipelineService } from '../../src/pipeline/pipeline.service';
import { AppMetrics } from '../../src/telemetry/app-metrics';
import { UploadsService } from '../../src/uploads/uploads.service';
import { startTestGemini, type TestGemini } from '../support/gemini-emulator';
import { pixelBombPng, referenceImage } from '../support/images';
import { numberSchemas, OpenApiContract, pointer, schemasWithExamples, type OpenApiDocument, type RealResponse } from '../support/openapi';
import { startS3rver, useS3rverCredentials, type S3rverHandle } from '../support/s3rver';

const KEY = 'alice-key-0123456789abcdef';
const UNKNOWN_ID = '01939d2a-0000-7000-8000-000000000000';
const ROOT = join(__dirname, '..', '..');

const GENERATIONS = '/api/v1/generations';
const GENERATION = '/api/v1/generations/{id}';
const CANCEL = '/api/v1/generations/{id}/cancel';
const IMAGE = '/api/v1/generations/{id}/images/{index}';
const EVENTS = '/api/v1/generations/{id}/events';
const PALETTES = '/api/v1/palettes';
const REFERENCES = '/api/v1/references';
const REFERENCE = '/api/v1/references/{id}';
const REFERENCE_IMAGE = '/api/v1/references/{id}/image';
const SEARCH = '/api/v1/search';
const LIVE = '/health/live';
const READY = '/health/ready';
/** Every protected operation: [method, path template, a real path]. */
const protectedOperations = (id: string): [string, string, string][] => [
  ['post', GENERATIONS, GENERATIONS],
  ['get', GENERATIONS, GENERATIONS],
  ['get', GENERATION, `${GENERATIONS}/${id}`],
  ['post', CANCEL, `${GENERATIONS}/${id}/cancel`],
  ['get', IMAGE, `${GENERATIONS}/${id}/images/0`],
  ['get', EVENTS, `${GENERATIONS}/${id}/events`],
  ['post', PALETTES, PALETTES],
  ['post', REFERENCES, REFERENCES],
  ['get', REFERENCES, REFERENCES],
  ['get', REFERENCE, `${REFERENCES}/${id}`],
  ['delete', REFERENCE, `${REFERENCES}/${id}`],
  ['get', REFERENCE_IMAGE, `${REFERENCES}/${id}/image`],
  ['get', SEARCH, `${SEARCH}?q=x`],
];

const BASE_ENV = { METRICS_PORT: '0', OTEL_SDK_DISABLED: 'true', LOG_LEVEL: 'silent', PALETTE_WORKERS: '1' };

async function listen(app: NestExpressApplication): Promise<string> {
  await app.listen(0, '127.0.0.1');
  return `http://127.0.0.1:${(app.getHttpServer().address() as AddressInfo).port}`;
}

/** One real request; the whole body is read (an event stream until the server ends it). */
async function call(base: string, method: string, path: string, init: { headers?: Record<string, string>; body?: string | FormData | Uint8Array } = {}): Promise<RealResponse> {
  const res = await fetch(`${base}${path}`, { method: method.toUpperCase(), headers: init.headers, body: init.body, redirect: 'manual' });
  return { status: res.status, headers: res.headers, body: Buffer.from(await res.arrayBuffer()) };
}

const json = (body: unknown) => ({ headers: { 'content-type': 'application/json', 'x-api-key': KEY }, body: JSON.stringify(body) });
const form = (fields: Record<string, string | Blob>, headers: Record<string, string> = { 'x-api-key': KEY }) => {
  const data = new FormData();
  for (const [name, value] of Object.entries(fields)) data.append(name, value, ...(value instanceof Blob ? ['upload.bin'] : []));
  return { headers, body: data };
};
const asBlob = (bytes: Buffer, type = 'application/octet-stream') => new Blob([new Uint8Array(bytes)], { type });
const parsed = (res: RealResponse) => JSON.parse(res.body.toString('utf8')) as Record<string, any>;

/** The real palette worker; a task crashes its thread when `trigger` exists (deleting it first). */
function crashOnDemandWorker(dir: string, trigger: string): string {
  const file = join(dir, 'crash-on-demand.worker.mjs');
  const realWorker = pathToFileURL(resolveWorkerFile(join(ROOT, 'src', 'palette'))).href;
  writeFileSync(
    file,
    `import { existsSync, unlinkSync } from 'node:fs';
import paletteTask from ${JSON.stringify(realWorker)};
export default async function crashOnDemand(task) {
  if (existsSync(${JSON.stringify(trigger)})) {
    unlinkSync(${JSON.stringify(trigger)});
    process.exit(3);
  }
  return paletteTask(task);
}
`,
  );
  return file;
}

/** A multipart upload to `path` that declares `bytes` and sends only its first part, held open until `end()`. */
function stalledUpload(base: string, bytes: number, path = PALETTES): { req: ClientRequest; end(): void } {
  const boundary = 'contract-test-boundary';
  const head = Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="image"; filename="a.png"\r\nContent-Type: image/png\r\n\r\n`);
  const { port } = new URL(base);
  const req = httpRequest({
    host: '127.0.0.1',
    port: Number(port),
    method: 'POST',
    path,
    headers: { 'content-type': `multipart/form-data; boundary=${boundary}`, 'content-length': String(bytes), 'x-api-key': KEY },
  });
  req.on('error', () => undefined);
  req.on('response', (res) => res.resume());
  req.write(head);
  return { req, end: () => req.destroy() };
}

/**
 * 30 succeeded generations and 30 references; the page holding the 15th generation and the page
 * holding the 15th reference are overwritten with garbage, as a failing disk might leave them.
 */
async function damagedDatabase(dataDir: string): Promise<{ generation: Generation; reference: Reference }> {
  const file = databaseFile(dataDir);
  const db = await createDatabase(file);
  const repository = new GenerationsRepository(db);
  const generations: Generation[] = [];
  for (let i = 0; i < 30; i++) {
    const prompt = `marker-${String(i).padStart(3, '0')} ${'a long prompt about a harbour at dawn, '.repeat(25)}`;
    const g: Generation = {
      ...newQueuedGeneration(newGenerationId(), 'gemini-2.5-flash-image', { prompt, aspectRatio: '1:1', count: 1, paletteSize: 5 }, { createdAt: new Date(Date.UTC(2026, 10, 1, 0, i)) }),
      status: 'succeeded',
      stage: 'done',
    };
    await repository.create(g);
    generations.push(g);
  }
  const references = new ReferencesRepository(db);
  const stored: Reference[] = [];
  for (let i = 0; i < 30; i++) {
    // The storage key is only in the reference's own row (not in the search index), so it finds that row's page.
    const r: Reference = {
      id: newGenerationId(),
      owner: null,
      title: `reference ${i}`,
      tags: [],
      storageKey: `refmark-${String(i).padStart(3, '0')}-${'k'.repeat(400)}.png`,
      mimeType: 'image/png',
      width: 1,
      height: 1,
      bytes: 100,
      palette: [{ hex: '#d43434', rgb: [212, 52, 52], proportion: 1 }],
      createdAt: new Date(Date.UTC(2026, 10, 2, 0, i)),
    };
    await references.create(r);
    stored.push(r);
  }
  await db.destroy(); // checkpoints the WAL into the file
  const generation = generations[15];
  const reference = stored[15];
  for (const marker of [generation.prompt.slice(0, 10), reference.storageKey.slice(0, 12)]) {
    const offset = readFileSync(file).indexOf(Buffer.from(marker));
    expect(offset).toBeGreaterThan(0);
    const fd = openSync(file, 'r+');
    try {
      const pageSize = 4096;
      writeSync(fd, Buffer.alloc(pageSize, 0xa5), 0, pageSize, Math.floor(offset / pageSize) * pageSize);
    } finally {
      closeSync(fd);
    }
  }
  return { generation, reference };
}

/** The error codes the source gives HTTP answers, by file: literal codes of AppError and the error classes that extend it. */
function codesThrownBySource(): Map<string, string> {
  const codes = new Map<string, string>();
  const patterns = [
    /new AppError\(\s*[^,]+,\s*'([A-Z_]+)'/g,
    /super\(\s*HttpStatus\.\w+,\s*'([A-Z_]+)'/g,
    /super\(\s*'([A-Z_]+)'/g,
    /new StorageError\(\s*'([A-Z_]+)'/g,
    /new PaletteError\(\s*'([A-Z_]+)'/g,
  ];
  const walk = (dir: string): string[] =>
    readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? walk(join(dir, e.name)) : e.name.endsWith('.ts') && !e.name.endsWith('.spec.ts') ? [join(dir, e.name)] : []));
  for (const file of walk(join(ROOT, 'src'))) {
    const text = readFileSync(file, 'utf8');
    for (const pattern of patterns) for (const match of text.matchAll(pattern)) codes.set(match[1], relative(ROOT, file));
  }
  return codes;
}

/** Codes that never reach a client as they are, and why. */
const NOT_ANSWERED: Record<string, string> = {
  CLIENT_CLOSED_REQUEST: 'the client is gone; only logs and metrics see it',
  NOT_FOUND: 'a stored object that is missing: the image route answers IMAGE_NOT_FOUND',
  INVALID_KEY: 'a storage key the server built wrongly: a bug, answered 500 INTERNAL_ERROR',
};

describe('The OpenAPI document against real answers (e2e)', () => {
  let gemini: TestGemini;
  let document: OpenApiDocument;
  let contract: OpenApiContract;
  const dirs: string[] = [];
  const tempDir = (name: string) => {
    const dir = mkdtempSync(join(tmpdir(), `his-openapi-${name}-`));
    dirs.push(dir);
    return dir;
  };

  /** Checks one real answer against the document; a mismatch fails with the route and ajv's words. */
  const expectDocumented = (method: string, template: string, res: RealResponse) => {
    expect({ answer: `${method} ${template} → ${res.status}`, problems: contract.check(method, template, res) }).toEqual({
      answer: `${method} ${template} → ${res.status}`,
      problems: [],
    });
  };

  beforeAll(async () => {
    gemini = await startTestGemini();
  });

  afterAll(async () => {
    await gemini?.close();
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  });

  describe('main app: API keys, the palette pool crashing on demand, a 1 MB upload budget', () => {
    let app: NestExpressApplication;
    let base: string;
    let crashTrigger: string;
    let png: Buffer;
    let finished: Record<string, any>;
    let dir: string;

    beforeAll(async () => {
      dir = tempDir('main');
      crashTrigger = join(dir, 'crash-next-task');
      const workerFile = crashOnDemandWorker(dir, crashTrigger);
      const config = loadConfig({ ...gemini.env, ...BASE_ENV, DATA_DIR: dir, UPLOAD_TMP_DIR: join(dir, 'uploads'), API_KEYS: `alice:${KEY}`, UPLOAD_MAX_INFLIGHT_MB: '1' });
      const moduleRef = await Test.createTestingModule({ imports: [AppModule.forRoot(config)] })
        .overrideProvider(PaletteService)
        .useFactory({ factory: (c: AppConfig, m: AppMetrics) => new PaletteService(c, m, workerFile), inject: [AppConfig, AppMetrics] })
        .compile();
      app = moduleRef.createNestApplication<NestExpressApplication>({ bodyParser: false, logger: false });
      configureApp(app, config);
      base = await listen(app);
      const res = await call(base, 'get', '/docs-json');
      expect(res.status).toBe(200);
      document = parsed(res) as unknown as OpenApiDocument;
      contract = new OpenApiContract(document);
      png = await referenceImage('png', { width: 64, height: 64 });
    });

    afterAll(async () => {
      await app?.close();
    });

    it('POST /generations: 201 with Prefer: wait, 202 without, 400, 413, 415', async () => {
      const done = await call(base, 'post', GENERATIONS, { ...json({ prompt: 'a solid red square' }), headers: { ...json({}).headers, prefer: 'wait=30' } });
      expect(done.status).toBe(201);
      expectDocumented('post', GENERATIONS, done);
      finished = parsed(done);
      expect(finished).toMatchObject({ status: 'succeeded', error: null });

      const accepted = await call(base, 'post', GENERATIONS, json({ prompt: 'only a prompt' }));
      expect(accepted.status).toBe(202);
      expectDocumented('post', GENERATIONS, accepted);

      for (const [res, status] of [
        [await call(base, 'post', GENERATIONS, json({ prompt: 'ok', count: 'two' })), 400],
        [await call(base, 'post', GENERATIONS, { headers: { 'content-type': 'application/json', 'x-api-key': KEY }, body: '{"prompt": ' }), 400],
        [await call(base, 'post', GENERATIONS, json({ prompt: 'ok', padding: 'x'.repeat(100_000) })), 413],
        [await call(base, 'post', GENERATIONS, { headers: { 'x-api-key': KEY }, body: '{"prompt":"ok"}' }), 415],
      ] as const) {
        expect(res.status).toBe(status);
        expectDocumented('post', GENERATIONS, res);
      }
    });

    it('GET /generations: 200 (two pages through the cursor), 400 for a bad limit or cursor', async () => {
      const first = await call(base, 'get', `${GENERATIONS}?limit=1`, { headers: { 'x-api-key': KEY } });
      expectDocumented('get', GENERATIONS, first);
      const cursor = parsed(first).nextCursor as string;
      expect(cursor).toEqual(expect.any(String));
      const second = await call(base, 'get', `${GENERATIONS}?limit=1&cursor=${encodeURIComponent(cursor)}`, { headers: { 'x-api-key': KEY } });
      expect(second.status).toBe(200);
      expectDocumented('get', GENERATIONS, second);
      for (const query of ['limit=abc', 'cursor=not-a-cursor']) {
        const bad = await call(base, 'get', `${GENERATIONS}?${query}`, { headers: { 'x-api-key': KEY } });
        expect(bad.status).toBe(400);
        expectDocumented('get', GENERATIONS, bad);
      }
    });

    it('GET /generations/{id}: 200 for each state a generation passes, 404', async () => {
      const hung = parsed(await call(base, 'post', GENERATIONS, json({ prompt: 'a slow snail [emulator:hang]', count: 2 })));
      for (const id of [finished.id, hung.id]) {
        const res = await call(base, 'get', `${GENERATIONS}/${id}`, { headers: { 'x-api-key': KEY } });
        expect(res.status).toBe(200);
        expectDocumented('get', GENERATION, res);
      }
      const canceled = await call(base, 'post', `${GENERATIONS}/${hung.id}/cancel`, { headers: { 'x-api-key': KEY } });
      expect(canceled.status).toBe(200);
      expectDocumented('post', CANCEL, canceled);
      expect(parsed(canceled)).toMatchObject({ status: 'canceled', error: { code: 'CANCELED' } });
      const failed = await call(base, 'post', GENERATIONS, { ...json({ prompt: 'something forbidden [emulator:block]' }), headers: { ...json({}).headers, prefer: 'wait=30' } });
      expectDocumented('post', GENERATIONS, failed);
      expect(parsed(failed)).toMatchObject({ status: 'failed', error: { code: 'GEMINI_BLOCKED' } });

      const missing = await call(base, 'get', `${GENERATIONS}/${UNKNOWN_ID}`, { headers: { 'x-api-key': KEY } });
      expect(missing.status).toBe(404);
      expectDocumented('get', GENERATION, missing);
    });

    it('POST /generations/{id}/cancel: 409 once finished, 404 for an unknown id', async () => {
      const conflict = await call(base, 'post', `${GENERATIONS}/${finished.id}/cancel`, { headers: { 'x-api-key': KEY } });
      expect(conflict.status).toBe(409);
      expectDocumented('post', CANCEL, conflict);
      const missing = await call(base, 'post', `${GENERATIONS}/${UNKNOWN_ID}/cancel`, { headers: { 'x-api-key': KEY } });
      expect(missing.status).toBe(404);
      expectDocumented('post', CANCEL, missing);
    });

    it('GET /generations/{id}/images/{index}: 200 image/png, 404 as JSON for a missing image or generation', async () => {
      const image = await call(base, 'get', finished.images[0].url as string, { headers: { 'x-api-key': KEY } });
      expect(image.status).toBe(200);
      expect(image.headers.get('content-type')).toBe('image/png');
      expectDocumented('get', IMAGE, image);
      for (const path of [`${GENERATIONS}/${finished.id}/images/3`, `${GENERATIONS}/${UNKNOWN_ID}/images/0`]) {
        const missing = await call(base, 'get', path, { headers: { 'x-api-key': KEY } });
        expect(missing.status).toBe(404);
        expectDocumented('get', IMAGE, missing);
      }
    });

    it('an image file removed behind the service\'s back answers 404 IMAGE_NOT_FOUND, naming no storage key', async () => {
      const other = parsed(await call(base, 'post', GENERATIONS, { ...json({ prompt: 'a green leaf' }), headers: { ...json({}).headers, prefer: 'wait=30' } }));
      const files = (readdirSync(join(dir, 'images'), { recursive: true }) as string[]).filter((f) => f.includes(other.id as string) && f.endsWith('.png'));
      expect(files).toHaveLength(1);
      rmSync(join(dir, 'images', files[0]));
      const gone = await call(base, 'get', other.images[0].url as string, { headers: { 'x-api-key': KEY } });
      expect({ status: gone.status, code: parsed(gone).code }).toEqual({ status: 404, code: 'IMAGE_NOT_FOUND' });
      expect(parsed(gone).message).not.toContain('images/');
      expectDocumented('get', IMAGE, gone);
    });

    it('GET /generations/{id}/events: 200 text/event-stream whose data are generations, 404 as JSON', async () => {
      const stream = await call(base, 'get', `${GENERATIONS}/${finished.id}/events`, { headers: { 'x-api-key': KEY } });
      expect(stream.status).toBe(200);
      expectDocumented('get', EVENTS, stream);
      const data = stream.body
        .toString('utf8')
        .split('\n')
        .filter((line) => line.startsWith('data: '))
        .map((line) => JSON.parse(line.slice('data: '.length)) as unknown);
      expect(data.length).toBeGreaterThan(0);
      for (const generation of data) expect(contract.problems(pointer('components', 'schemas', 'GenerationDto'), generation)).toEqual([]);

      const missing = await call(base, 'get', `${GENERATIONS}/${UNKNOWN_ID}/events`, { headers: { 'x-api-key': KEY } });
      expect(missing.status).toBe(404);
      expectDocumented('get', EVENTS, missing);
    });

    it('POST /palettes: 200, 400, 413, 415, 500 when the worker crashes, 503 past the upload budget', async () => {
      const cases: [RealResponse, number][] = [
        [await call(base, 'post', PALETTES, form({ image: asBlob(png, 'image/png'), size: '3' })), 200],
        [await call(base, 'post', PALETTES, form({ size: '3' })), 400],
        [await call(base, 'post', PALETTES, form({ image: asBlob(png, 'image/png'), size: 'abc' })), 400],
        [await call(base, 'post', PALETTES, form({ image: asBlob(await pixelBombPng(50_000), 'image/png') })), 413],
        [await call(base, 'post', PALETTES, form({ image: asBlob(Buffer.from('just some text'), 'text/plain') })), 415],
      ];
      writeFileSync(crashTrigger, '');
      cases.push([await call(base, 'post', PALETTES, form({ image: asBlob(png, 'image/png') })), 500]);
      expect(existsSync(crashTrigger)).toBe(false);
      for (const [res, status] of cases) {
        expect({ status: res.status, body: res.body.toString('utf8').slice(0, 200) }).toMatchObject({ status });
        expectDocumented('post', PALETTES, res);
      }

      // One upload holds the 1 MB budget (it declares 1.5 MB and stalls); the next is refused before its body is read.
      const uploads = app.get(UploadsService);
      const holder = stalledUpload(base, 1_500_000);
      try {
        for (let i = 0; uploads.stats().bytes < 1_500_000; i++) {
          if (i > 500) throw new Error('the stalled upload was never admitted');
          await new Promise((r) => setTimeout(r, 10));
        }
        const busy = await call(base, 'post', PALETTES, form({ image: asBlob(png, 'image/png') }));
        expect(busy.status).toBe(503);
        expectDocumented('post', PALETTES, busy);
        expect(parsed(busy).code).toBe('UPLOADS_BUSY');
      } finally {
        holder.end();
      }
    });

    /** Waits until no upload holds bytes of the 1 MB budget (a stalled upload releases them once its socket closes). */
    const untilUploadBudgetIsFree = async () => {
      const uploads = app.get(UploadsService);
      for (let i = 0; uploads.stats().bytes > 0; i++) {
        if (i > 1000) throw new Error('an upload never gave its bytes back');
        await new Promise((r) => setTimeout(r, 10));
      }
    };

    it('POST /references: 201, 400, 413 (over 20 MB, a pixel bomb), 415, 500 when the worker crashes, 503 past the upload budget', async () => {
      // The upload the palette test stalled gives its bytes back once the server has seen it go.
      await untilUploadBudgetIsFree();
      const cases: [RealResponse, number, string?][] = [
        [await call(base, 'post', REFERENCES, form({ image: asBlob(png, 'image/png'), title: 'harbour study', tags: 'warm, studio' })), 201],
        [await call(base, 'post', REFERENCES, form({ image: asBlob(png, 'image/png'), title: 'x'.repeat(201) })), 400, 'VALIDATION_FAILED'],
        [await call(base, 'post', REFERENCES, form({ title: 'no image' })), 400, 'IMAGE_REQUIRED'],
        [await call(base, 'post', REFERENCES, form({ image: asBlob(await pixelBombPng(50_000), 'image/png') })), 413, 'IMAGE_TOO_LARGE'],
        [await call(base, 'post', REFERENCES, form({ image: asBlob(Buffer.from('just some text'), 'text/plain') })), 415, 'UNSUPPORTED_IMAGE'],
      ];
      // Over 20 MB (refused on its declared length).
      cases.push([await call(base, 'post', REFERENCES, form({ image: asBlob(Buffer.alloc(21 * 1024 * 1024, 0x89), 'image/png') })), 413, 'PAYLOAD_TOO_LARGE']);
      writeFileSync(crashTrigger, '');
      cases.push([await call(base, 'post', REFERENCES, form({ image: asBlob(png, 'image/png') })), 500, 'PALETTE_ERROR']);
      expect(existsSync(crashTrigger)).toBe(false);
      for (const [res, status, code] of cases) {
        expect({ status: res.status, body: res.body.toString('utf8').slice(0, 200) }).toMatchObject({ status });
        expectDocumented('post', REFERENCES, res);
        if (code) expect(parsed(res).code).toBe(code);
      }
      expect(cases[0][0].headers.get('location')).toBe(`${REFERENCES}/${parsed(cases[0][0]).id}`);

      const uploads = app.get(UploadsService);
      const holder = stalledUpload(base, 1_500_000, REFERENCES);
      try {
        for (let i = 0; uploads.stats().bytes < 1_500_000; i++) {
          if (i > 500) throw new Error('the stalled upload was never admitted');
          await new Promise((r) => setTimeout(r, 10));
        }
        const busy = await call(base, 'post', REFERENCES, form({ image: asBlob(png, 'image/png') }));
        expect(busy.status).toBe(503);
        expectDocumented('post', REFERENCES, busy);
        expect(parsed(busy).code).toBe('UPLOADS_BUSY');
      } finally {
        holder.end();
      }
    });

    it('GET /references (two pages), /references/{id}, its image; DELETE: 200/204, 400 for a bad limit or cursor, 404', async () => {
      await untilUploadBudgetIsFree();
      const made: Record<string, any>[] = [];
      for (const title of ['first of two', 'second of two']) {
        const res = await call(base, 'post', REFERENCES, form({ image: asBlob(png, 'image/png'), title }));
        expect(res.status).toBe(201);
        made.push(parsed(res));
      }
      const key = { headers: { 'x-api-key': KEY } };
      const first = await call(base, 'get', `${REFERENCES}?limit=1`, key);
      expect(first.status).toBe(200);
      expectDocumented('get', REFERENCES, first);
      const cursor = parsed(first).nextCursor as string;
      expect(cursor).toEqual(expect.any(String));
      const second = await call(base, 'get', `${REFERENCES}?limit=1&cursor=${encodeURIComponent(cursor)}`, key);
      expect(second.status).toBe(200);
      expectDocumented('get', REFERENCES, second);
      for (const query of ['limit=abc', 'cursor=not-a-cursor']) {
        const bad = await call(base, 'get', `${REFERENCES}?${query}`, key);
        expect(bad.status).toBe(400);
        expectDocumented('get', REFERENCES, bad);
      }

      const [reference, doomed] = made;
      const one = await call(base, 'get', `${REFERENCES}/${reference.id}`, key);
      expect(one.status).toBe(200);
      expectDocumented('get', REFERENCE, one);
      const image = await call(base, 'get', reference.url as string, key);
      expect({ status: image.status, type: image.headers.get('content-type') }).toEqual({ status: 200, type: 'image/png' });
      expect(Buffer.compare(image.body, png)).toBe(0);
      expectDocumented('get', REFERENCE_IMAGE, image);

      const deleted = await call(base, 'delete', `${REFERENCES}/${doomed.id}`, key);
      expect(deleted.status).toBe(204);
      expectDocumented('delete', REFERENCE, deleted);
      for (const id of [doomed.id, UNKNOWN_ID, 'not-an-id']) {
        for (const [method, template, path] of [
          ['get', REFERENCE, `${REFERENCES}/${id}`],
          ['get', REFERENCE_IMAGE, `${REFERENCES}/${id}/image`],
          ['delete', REFERENCE, `${REFERENCES}/${id}`],
        ] as const) {
          const missing = await call(base, method, path, key);
          expect({ path, status: missing.status, code: parsed(missing).code }).toEqual({ path, status: 404, code: 'REFERENCE_NOT_FOUND' });
          expectDocumented(method, template, missing);
        }
      }
    });

    it('GET /search: 200 by text, colour, similarTo; 400 without a criterion or with a bad colour; 404 for an unknown similarTo', async () => {
      await untilUploadBudgetIsFree();
      const key = { headers: { 'x-api-key': KEY } };
      const reference = parsed(await call(base, 'post', REFERENCES, form({ image: asBlob(png, 'image/png'), title: 'lighthouse sketch', tags: 'coast' })));
      for (const query of ['q=lighthouse', `color=${encodeURIComponent('#d43434:70')}&color=${encodeURIComponent('#2a4d9b:30')}`, `similarTo=reference:${reference.id}`, 'q=coast&color=%23d43434&kind=reference']) {
        const res = await call(base, 'get', `${SEARCH}?${query}`, key);
        expect({ query, status: res.status }).toEqual({ query, status: 200 });
        expectDocumented('get', SEARCH, res);
      }
      const byText = parsed(await call(base, 'get', `${SEARCH}?q=lighthouse`, key));
      expect(byText.items.map((i: Record<string, any>) => i.id)).toContain(reference.id);

      for (const [query, status, code] of [
        ['', 400, 'SEARCH_CRITERION_REQUIRED'],
        ['kind=reference', 400, 'SEARCH_CRITERION_REQUIRED'],
        ['color=red', 400, 'VALIDATION_FAILED'],
        [`color=%23d43434&similarTo=reference:${reference.id}`, 400, 'VALIDATION_FAILED'],
        [`similarTo=generation:${UNKNOWN_ID}`, 404, 'GENERATION_NOT_FOUND'],
        [`similarTo=reference:${UNKNOWN_ID}`, 404, 'REFERENCE_NOT_FOUND'],
      ] as const) {
        const res = await call(base, 'get', `${SEARCH}?${query}`, key);
        expect({ query, status: res.status, code: parsed(res).code }).toEqual({ query, status, code });
        expectDocumented('get', SEARCH, res);
      }
    });

    it('every /api operation answers 401 without a key; health answers 200 without one', async () => {
      for (const [method, template, path] of protectedOperations(finished.id)) {
        const res = await call(base, method, path, method === 'post' && template === GENERATIONS ? { headers: { 'content-type': 'application/json' }, body: '{"prompt":"x"}' } : {});
        expect({ path, status: res.status }).toEqual({ path, status: 401 });
        expectDocumented(method, template, res);
        expect(parsed(res).code).toBe('API_KEY_REQUIRED');
      }
      const wrongKey = await call(base, 'get', GENERATIONS, { headers: { 'x-api-key': 'not-a-configured-key-000' } });
      expectDocumented('get', GENERATIONS, wrongKey);
      expect(parsed(wrongKey).code).toBe('INVALID_API_KEY');
      for (const path of [LIVE, READY]) {
        const res = await call(base, 'get', path);
        expect(res.status).toBe(200);
        expectDocumented('get', path, res);
      }
    });

    it('while shutting down: POST /generations → 503 SHUTTING_DOWN, readiness → 503 NOT_READY', async () => {
      app.get(ShutdownState).begin();
      await app.get(PipelineService).drain(0);
      const refused = await call(base, 'post', GENERATIONS, json({ prompt: 'too late' }));
      expect(refused.status).toBe(503);
      expectDocumented('post', GENERATIONS, refused);
      expect(parsed(refused).code).toBe('SHUTTING_DOWN');
      const ready = await call(base, 'get', READY);
      expect(ready.status).toBe(503);
      expectDocumented('get', READY, ready);
    });
  });

  describe('RATE_LIMIT_PER_MINUTE=1: the second request of a key, whatever the route', () => {
    let app: NestExpressApplication;
    let base: string;

    beforeAll(async () => {
      const dir = tempDir('limited');
      app = await createApp(loadConfig({ ...gemini.env, ...BASE_ENV, DATA_DIR: dir, API_KEYS: `alice:${KEY}`, RATE_LIMIT_PER_MINUTE: '1' }), { logger: false });
      base = await listen(app);
    });

    afterAll(async () => {
      await app?.close();
    });

    it('every /api operation answers 429 RATE_LIMITED with Retry-After', async () => {
      expect((await call(base, 'get', GENERATIONS, { headers: { 'x-api-key': KEY } })).status).toBe(200);
      for (const [method, template, path] of protectedOperations(UNKNOWN_ID)) {
        const body = method === 'post' && (template === PALETTES || template === REFERENCES) ? form({ size: '3' }) : template === GENERATIONS && method === 'post' ? json({ prompt: 'x' }) : { headers: { 'x-api-key': KEY } };
        const res = await call(base, method, path, body);
        expect({ path, status: res.status }).toEqual({ path, status: 429 });
        expectDocumented(method, template, res);
        expect(parsed(res).code).toBe('RATE_LIMITED');
      }
    });
  });

  describe('a damaged database page: the routes that read it answer 503 DATABASE_CORRUPT', () => {
    let app: NestExpressApplication;
    let base: string;
    let victim: Generation;
    let victimReference: Reference;

    beforeAll(async () => {
      const dir = tempDir('damaged');
      ({ generation: victim, reference: victimReference } = await damagedDatabase(dir));
      app = await createApp(loadConfig({ ...gemini.env, ...BASE_ENV, DATA_DIR: dir }), { logger: false });
      base = await listen(app);
    });

    afterAll(async () => {
      await app?.close();
    });

    it.each([
      ['get', GENERATIONS, () => `${GENERATIONS}?limit=100`],
      ['get', GENERATION, () => `${GENERATIONS}/${victim.id}`],
      ['post', CANCEL, () => `${GENERATIONS}/${victim.id}/cancel`],
      ['get', IMAGE, () => `${GENERATIONS}/${victim.id}/images/0`],
      ['get', EVENTS, () => `${GENERATIONS}/${victim.id}/events`],
      ['get', REFERENCES, () => `${REFERENCES}?limit=100`],
      ['get', REFERENCE, () => `${REFERENCES}/${victimReference.id}`],
      ['delete', REFERENCE, () => `${REFERENCES}/${victimReference.id}`],
      ['get', REFERENCE_IMAGE, () => `${REFERENCES}/${victimReference.id}/image`],
      ['get', SEARCH, () => `${SEARCH}?q=marker&limit=100`],
    ])('%s %s', async (method, template, path) => {
      const res = await call(base, method, path());
      expect({ status: res.status, code: parsed(res).code }).toEqual({ status: 503, code: 'DATABASE_CORRUPT' });
      expectDocumented(method, template, res);
    });
  });

  describe('S3_PRESIGN=true: the image route redirects to S3', () => {
    let app: NestExpressApplication;
    let base: string;
    let s3: S3rverHandle;

    beforeAll(async () => {
      useS3rverCredentials();
      s3 = await startS3rver({ bucket: 'contract-images' });
      const dir = tempDir('presign');
      app = await createApp(
        loadConfig({ ...gemini.env, ...BASE_ENV, DATA_DIR: dir, S3_BUCKET: s3.bucket, S3_ENDPOINT: s3.endpoint, S3_FORCE_PATH_STYLE: 'true', S3_PRESIGN: 'true' }),
        { logger: false },
      );
      base = await listen(app);
    });

    afterAll(async () => {
      await app?.close();
      await s3?.dispose();
    });

    it('GET /generations/{id}/images/0 → 302 to a presigned URL that serves the image', async () => {
      const done = parsed(await call(base, 'post', GENERATIONS, { headers: { 'content-type': 'application/json', prefer: 'wait=30' }, body: JSON.stringify({ prompt: 'a teal wave' }) }));
      expect(done.status).toBe('succeeded');
      const redirect = await call(base, 'get', done.images[0].url as string);
      expect(redirect.status).toBe(302);
      expectDocumented('get', IMAGE, redirect);
      const image = await fetch(redirect.headers.get('location')!);
      expect(image.status).toBe(200);
      expect(Buffer.from(await image.arrayBuffer()).subarray(1, 4).toString()).toBe('PNG');
    });

    it('GET /references/{id}/image → 302 to a presigned URL that serves the image', async () => {
      const png = await referenceImage('png', { width: 32, height: 32 });
      const created = await call(base, 'post', REFERENCES, form({ image: asBlob(png, 'image/png') }, {}));
      expect(created.status).toBe(201);
      const redirect = await call(base, 'get', parsed(created).url as string);
      expect(redirect.status).toBe(302);
      expectDocumented('get', REFERENCE_IMAGE, redirect);
      const image = await fetch(redirect.headers.get('location')!);
      expect(image.status).toBe(200);
      expect(Buffer.compare(Buffer.from(await image.arrayBuffer()), png)).toBe(0);
    });
  });

  describe('the document itself', () => {
    it('every documented status of every operation was answered for real above', () => {
      expect(contract.documented().filter((entry) => !contract.covered.has(entry))).toEqual([]);
    });

    it('every /api operation requires the api-key scheme (Swagger UI sends the key it was given); health and the docs do not', () => {
      expect(document.components?.securitySchemes).toEqual({ 'api-key': expect.objectContaining({ type: 'apiKey', in: 'header', name: 'x-api-key' }) });
      for (const [path, item] of Object.entries(document.paths)) {
        for (const [method, operation] of Object.entries(item)) {
          const expected = path.startsWith('/api/') ? [{ 'api-key': [] }] : undefined;
          expect({ operation: `${method} ${path}`, security: operation.security }).toEqual({ operation: `${method} ${path}`, security: expected });
        }
      }
    });

    it('every example is valid against its own schema', () => {
      const examples = schemasWithExamples(document);
      expect(examples.length).toBeGreaterThan(20);
      const invalid = examples.flatMap(({ ref, example }) => contract.problems(ref, example).map((problem) => `${decodeURIComponent(ref)}: ${problem}`));
      expect(invalid).toEqual([]);
    });

    it('counts, sizes, indexes, pixels, bytes, tokens and milliseconds are integers; only proportions, distances and scores are numbers', () => {
      expect(numberSchemas(document).map(decodeURIComponent).sort()).toEqual([
        '#/components/schemas/PaletteColorDto/properties/proportion',
        '#/components/schemas/SearchItemDto/properties/color/properties/distance',
        '#/components/schemas/SearchItemDto/properties/score',
      ]);
    });

    it('lists every error code the source answers with', () => {
      const documentedCodes = new Set(
        Object.values(document.paths).flatMap((item) =>
          Object.values(item).flatMap((operation) =>
            Object.values(operation.responses).flatMap((response) => {
              const schema = response.content?.['application/json']?.schema as { properties?: { code?: { enum?: string[] } } } | undefined;
              return schema?.properties?.code?.enum ?? [];
            }),
          ),
        ),
      );
      const missing = [...codesThrownBySource()].filter(([code]) => !documentedCodes.has(code) && !(code in NOT_ANSWERED)).map(([code, file]) => `${code} (${file})`);
      expect(missing).toEqual([]);
    });

    it('a request body with defaults keeps them, and only `prompt` is required', () => {
      const schema = document.paths[GENERATIONS].post.requestBody!.content['application/json'].schema as Record<string, any>;
      expect(schema.$ref).toBeUndefined();
      expect(schema.required).toEqual(['prompt']);
      expect(schema.properties).toMatchObject({ aspectRatio: { default: '1:1' }, count: { type: 'integer', default: 1 }, paletteSize: { type: 'integer', default: 5 } });
      const multipart = document.paths[PALETTES].post.requestBody!.content['multipart/form-data'].schema as Record<string, any>;
      expect(multipart.properties.image).toMatchObject({ type: 'string', format: 'binary' });
    });
  });
});
