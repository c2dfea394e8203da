import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { NestExpressApplication } from '@nestjs/platform-express';
import sharp from 'sharp';
import request from 'supertest';
import { createApp } from '../../src/app.factory';
import { loadConfig } from '../../src/config/app-config';
import { startTestGemini, type TestGemini } from '../support/gemini-emulator';

type Body = Record<string, any>;

/** Euclidean distance in RGB between a palette colour and a reference. */
const rgbDistance = (a: number[], b: number[]) => Math.hypot(a[0] - b[0], a[1] - b[1], a[2] - b[2]);
/** A clearly red / blue colour: that channel leads the others by a wide margin. */
const isRed = ([r, g, b]: number[]) => r > 150 && r - Math.max(g, b) > 100;
const isBlue = ([r, g, b]: number[]) => b > 150 && b - Math.max(r, g) > 100;

/** The bundled Gemini emulator, reached by this file's apps through GEMINI_BASE_URL. */
let testGemini: TestGemini;
beforeAll(async () => {
  testGemini = await startTestGemini();
});
afterAll(async () => {
  await testGemini?.close();
});

/**
 * The real app (every module, the real @google/genai SDK against the in-process emulator, the
 * local storage folder, SQLite, the palette worker pool) driven over HTTP with supertest.
 */
describe('Generations API (e2e)', () => {
  let app: NestExpressApplication;
  let dataDir: string;
  let http: ReturnType<typeof request>;

  beforeAll(async () => {
    dataDir = mkdtempSync(join(tmpdir(), 'his-e2e-'));
    const config = loadConfig({
      ...testGemini.env,
      DATA_DIR: dataDir,
      METRICS_PORT: '0',
      OTEL_SDK_DISABLED: 'true',
      LOG_LEVEL: 'silent',
      PALETTE_WORKERS: '2',
      // Not exercised here: generous, so a busy machine cannot time out a call that should answer.
      GEMINI_TIMEOUT_MS: '60000',
      GEMINI_MAX_RETRIES: '1',
    });
    app = await createApp(config, { logger: false });
    await app.init();
    http = request(app.getHttpServer());
  });

  afterAll(async () => {
    await app?.close();
    rmSync(dataDir, { recursive: true, force: true });
  });

  const create = (body: Body, wait?: number) => {
    const req = http.post('/api/v1/generations').send(body);
    return wait ? req.set('Prefer', `wait=${wait}`) : req;
  };

  it('generates with Prefer: wait → 201, a downloadable image and a palette led by the prompt colour', async () => {
    const res = await create({ prompt: 'a solid red square' }, 30).expect(201);
    const g = res.body as Body;
    expect(res.headers.location).toBe(`/api/v1/generations/${g.id}`);
    expect(res.headers['preference-applied']).toBe('wait=30');
    expect(g).toMatchObject({ status: 'succeeded', stage: 'done', prompt: 'a solid red square', aspectRatio: '1:1', count: 1, error: null });
    expect(g.model).toBe('gemini-2.5-flash-image');
    expect(new Date(g.completedAt).getTime()).toBeGreaterThanOrEqual(new Date(g.createdAt).getTime());
    expect(g.timings.totalMs).toBeGreaterThanOrEqual(g.timings.geminiMs);
    expect(g.usage.outputTokens).toBeGreaterThan(0);
    expect(g.images).toHaveLength(1);
    const image = g.images[0] as Body;
    expect(image).toMatchObject({ index: 0, url: `/api/v1/generations/${g.id}/images/0`, mimeType: 'image/png', width: 1024, height: 1024 });
    expect(isRed(image.palette[0].rgb)).toBe(true);
    expect(rgbDistance(image.palette[0].rgb, [255, 0, 0])).toBeLessThan(80);
    expect(image.palette[0].hex).toMatch(/^#[0-9a-f]{6}$/);

    const bytes = await http.get(image.url).buffer(true).expect(200).expect('content-type', 'image/png');
    expect(Number(bytes.headers['content-length'])).toBe(image.bytes);
    const meta = await sharp(bytes.body as Buffer).metadata();
    expect([meta.format, meta.width, meta.height]).toEqual(['png', 1024, 1024]);
  });

  it('returns paletteSize colours whose proportions sum to 1, for every image of a multi-image generation', async () => {
    const res = await create({ prompt: 'a red apple on a blue table', aspectRatio: '16:9', count: 2, paletteSize: 5 }, 30).expect(201);
    const g = res.body as Body;
    expect(g.status).toBe('succeeded');
    expect(g.images.map((i: Body) => i.index).sort()).toEqual([0, 1]);
    for (const image of g.images as Body[]) {
      expect([image.width, image.height]).toEqual([1344, 768]);
      expect(image.palette).toHaveLength(5);
      const sum = (image.palette as Body[]).reduce((s, c) => s + c.proportion, 0);
      expect(Math.abs(sum - 1)).toBeLessThanOrEqual(0.01);
      const proportions = (image.palette as Body[]).map((c) => c.proportion);
      expect([...proportions].sort((a, b) => b - a)).toEqual(proportions);
    }
    const colours = (g.images[0].palette as Body[]).map((c) => c.rgb as number[]);
    expect(colours.some(isRed)).toBe(true);
    expect(colours.some(isBlue)).toBe(true);
  });

  it('answers 202 at once without Prefer, and the generation finishes in the background', async () => {
    const res = await create({ prompt: 'a green field [emulator:latency=200]' }).expect(202);
    expect(['queued', 'running']).toContain(res.body.status);
    expect(res.body.startedAt === null || typeof res.body.startedAt === 'string').toBe(true);
    let g: Body = res.body;
    for (let i = 0; i < 100 && !['succeeded', 'failed'].includes(g.status); i++) {
      await new Promise((r) => setTimeout(r, 50));
      g = (await http.get(res.headers.location).expect(200)).body;
    }
    expect(g.status).toBe('succeeded');
  });

  it('streams stage changes as Server-Sent Events and closes after the final state', async () => {
    const { body } = await create({ prompt: 'a yellow sun [emulator:latency=300]' }).expect(202);
    const res = await http
      .get(`/api/v1/generations/${body.id}/events`)
      .buffer(true)
      .parse((response, callback) => {
        let text = '';
        response.setEncoding('utf8');
        response.on('data', (chunk: string) => (text += chunk));
        response.on('end', () => callback(null, text));
      })
      .expect(200)
      .expect('content-type', /text\/event-stream/);
    const events = String(res.body)
      .split('\n\n')
      .filter((block) => block.includes('data: '))
      .map((block) => JSON.parse(block.slice(block.indexOf('data: ') + 6)) as Body);
    expect(events.length).toBeGreaterThanOrEqual(3);
    expect(events.at(-1)).toMatchObject({ status: 'succeeded', stage: 'done' });
    const stages = events.map((e) => e.stage);
    expect(stages).toContain('palette');
    expect(new Set(events.map((e) => `${e.status}/${e.stage}`)).size).toBe(events.length);
  });

  it('lists history newest first with a working cursor', async () => {
    const ids: string[] = [];
    for (const colour of ['orange', 'purple', 'teal']) {
      ids.push((await create({ prompt: `a ${colour} circle` }, 30).expect(201)).body.id);
    }
    const first = (await http.get('/api/v1/generations?limit=2').expect(200)).body as Body;
    expect(first.items).toHaveLength(2);
    expect(first.items.map((g: Body) => g.id)).toEqual([ids[2], ids[1]]);
    expect(typeof first.nextCursor).toBe('string');
    const second = (await http.get(`/api/v1/generations?limit=2&cursor=${encodeURIComponent(first.nextCursor)}`).expect(200)).body as Body;
    expect(second.items[0].id).toBe(ids[0]);
    await http.get('/api/v1/generations?cursor=garbage').expect(400).expect((r) => expect(r.body.code).toBe('INVALID_CURSOR'));
    await http.get('/api/v1/generations?limit=0').expect(400).expect((r) => expect(r.body.code).toBe('VALIDATION_FAILED'));
  });

  it('cancels a running generation (its Gemini call is aborted) and refuses to cancel it twice', async () => {
    const { body } = await create({ prompt: 'a blue whale [emulator:hang]' }).expect(202);
    // Wait until the call is in flight.
    for (let i = 0; i < 50; i++) {
      const g = (await http.get(`/api/v1/generations/${body.id}`)).body as Body;
      if (g.stage === 'gemini') break;
      await new Promise((r) => setTimeout(r, 20));
    }
    const canceled = await http.post(`/api/v1/generations/${body.id}/cancel`).expect(200);
    expect(canceled.body).toMatchObject({ status: 'canceled', error: { code: 'CANCELED' }, images: [] });
    expect(canceled.body.completedAt).not.toBeNull();
    const again = await http.post(`/api/v1/generations/${body.id}/cancel`).expect(409);
    expect(again.body).toEqual({ statusCode: 409, code: 'GENERATION_FINISHED', message: expect.any(String) });
  });

  it('records Gemini failures with their contract code', async () => {
    const blocked = (await create({ prompt: 'something forbidden [emulator:block]' }, 30).expect(201)).body as Body;
    expect(blocked).toMatchObject({ status: 'failed', error: { code: 'GEMINI_BLOCKED' }, images: [] });
    const textOnly = (await create({ prompt: 'just words [emulator:text]' }, 30).expect(201)).body as Body;
    expect(textOnly.error.code).toBe('GEMINI_NO_IMAGE');
  });

  it.each([
    ['a missing prompt', {}, 'VALIDATION_FAILED'],
    ['a blank prompt', { prompt: '   ' }, 'VALIDATION_FAILED'],
    ['a 4001-character prompt', { prompt: 'x'.repeat(4001) }, 'VALIDATION_FAILED'],
    ['a wrong type', { prompt: 'ok', count: '2' }, 'VALIDATION_FAILED'],
    ['count out of range', { prompt: 'ok', count: 5 }, 'VALIDATION_FAILED'],
    ['an unknown aspect ratio', { prompt: 'ok', aspectRatio: '2:1' }, 'VALIDATION_FAILED'],
    ['an unknown field', { prompt: 'ok', seed: 1 }, 'VALIDATION_FAILED'],
  ])('rejects %s with 400', async (_name, body, code) => {
    const res = await http.post('/api/v1/generations').send(body).expect(400);
    expect(res.body).toEqual({ statusCode: 400, code, message: expect.any(String) });
  });

  it('rejects malformed JSON with 400 INVALID_JSON', async () => {
    const res = await http.post('/api/v1/generations').set('content-type', 'application/json').send('{"prompt": ').expect(400);
    expect(res.body.code).toBe('INVALID_JSON');
  });

  it('answers 404 for unknown and malformed ids on every route', async () => {
    const unknown = '01939d2a-0000-7000-8000-000000000000';
    for (const path of [`/api/v1/generations/${unknown}`, '/api/v1/generations/not-an-id', `/api/v1/generations/${unknown}/events`, `/api/v1/generations/${unknown}/images/0`]) {
      const res = await http.get(path).expect(404);
      expect(res.body.code).toBe('GENERATION_NOT_FOUND');
    }
    await http.post(`/api/v1/generations/${unknown}/cancel`).expect(404);
    await http.get('/api/v1/nothing-here').expect(404).expect((r) => expect(r.body.code).toBe('NOT_FOUND'));
  });

  it('serves liveness, readiness and the OpenAPI document', async () => {
    await http.get('/health/live').expect(200).expect((r) => expect(r.body.status).toBe('ok'));
    const ready = await http.get('/health/ready').expect(200);
    expect(Object.keys(ready.body.details)).toEqual(expect.arrayContaining(['database', 'storage', 'palette']));
    const doc = (await http.get('/docs-json').expect(200)).body as Body;
    expect(doc.openapi).toMatch(/^3\./);
    expect(Object.keys(doc.paths)).toEqual(
      expect.arrayContaining([
        '/api/v1/generations',
        '/api/v1/generations/{id}',
        '/api/v1/generations/{id}/events',
        '/api/v1/generations/{id}/cancel',
        '/api/v1/generations/{id}/images/{index}',
        '/api/v1/palettes',
        '/health/live',
        '/health/ready',
      ]),
    );
  });
});
