import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { NestExpressApplication } from '@nestjs/platform-express';
import sharp from 'sharp';
import request from 'supertest';
import { createApp } from '../../src/app.factory';
import { loadConfig } from '../../src/config/app-config';
import { startTestGemini, type TestGemini } from '../support/gemini-emulator';
import { createTestDatabase, type TestDatabase } from '../support/postgres';

type Body = Record<string, any>;
const ALICE = 'alice-key-0123456789abcdef';
const BOB = 'bob-key-0123456789abcdef';
const solid = (background: string) => sharp({ create: { width: 256, height: 192, channels: 3, background } }).png().toBuffer();
const distance = (a: number[], b: number[]) => Math.hypot(a[0] - b[0], a[1] - b[1], a[2] - b[2]);

/**
 * Generation guided by references, through the real app and the real @google/genai SDK against the
 * emulator, which paints with the dominant colours of the images it receives first: a red reference
 * makes a red picture from a prompt that asks for teal, so the reference provably reached the model.
 */
describe.each(['SQLite', 'PostgreSQL'])('Generations with references on %s (e2e)', (dialect) => {
  let database: TestDatabase | undefined;
  let app: NestExpressApplication;
  let http: ReturnType<typeof request>;
  let dataDir: string;
  let gemini: TestGemini;
  let red: string;

  beforeAll(async () => {
    dataDir = mkdtempSync(join(tmpdir(), 'his-gen-refs-'));
    gemini = await startTestGemini();
    database = dialect === 'PostgreSQL' ? await createTestDatabase() : undefined;
    const config = loadConfig({
      ...gemini.env,
      ...(database ? { DATABASE_URL: database.url } : {}),
      DATA_DIR: dataDir,
      API_KEYS: `alice:${ALICE},bob:${BOB}`,
      METRICS_PORT: '0',
      OTEL_SDK_DISABLED: 'true',
      LOG_LEVEL: 'silent',
      PALETTE_WORKERS: '1',
    });
    app = await createApp(config, { logger: false });
    await app.init();
    http = request(app.getHttpServer());
    red = ((await http.post('/api/v1/references').set('x-api-key', ALICE).attach('image', await solid('#c81e1e'), 'red.png').field('title', 'Red').expect(201)).body as Body).id;
  });

  afterAll(async () => {
    await app?.close();
    await gemini?.close();
    await database?.drop();
    rmSync(dataDir, { recursive: true, force: true });
  });

  const generate = (key: string, body: Body) => http.post('/api/v1/generations').set('x-api-key', key).set('Prefer', 'wait=60').send(body);

  it("sends the references' images to Gemini with the prompt: the picture takes their colours", async () => {
    // The prompt asks for teal; the red reference leads the picture all the same.
    const plain = (await generate(ALICE, { prompt: 'a teal lake' }).expect(201)).body as Body;
    const guided = (await generate(ALICE, { prompt: 'a teal lake', references: [red] }).expect(201)).body as Body;
    expect(guided).toMatchObject({ status: 'succeeded', references: [red], paletteHint: false });
    expect(plain).toMatchObject({ status: 'succeeded', references: [], paletteHint: false });
    const redShare = (g: Body) =>
      (g.images[0].palette as Body[]).filter((c) => distance(c.rgb, [0xc8, 0x1e, 0x1e]) < 60).reduce((sum, c) => sum + c.proportion, 0);
    // Red covers most of the guided picture (the palette may split it into shades), none of the plain one.
    expect(redShare(guided)).toBeGreaterThan(0.5);
    expect(redShare(plain)).toBe(0);
    // The record keeps what was asked, for any instance and for the client.
    expect(((await http.get(`/api/v1/generations/${guided.id}`).set('x-api-key', ALICE).expect(200)).body as Body).references).toEqual([red]);
  });

  it('with paletteHint, succeeds and says so', async () => {
    const hinted = (await generate(ALICE, { prompt: 'a quiet landscape', references: [red], paletteHint: true }).expect(201)).body as Body;
    expect(hinted).toMatchObject({ status: 'succeeded', references: [red], paletteHint: true });
  });

  it("refuses another key's reference exactly like an unknown one: 400 UNKNOWN_REFERENCE, nothing created", async () => {
    const before = ((await http.get('/api/v1/generations?limit=100').set('x-api-key', BOB).expect(200)).body as Body).items.length;
    const foreign = await generate(BOB, { prompt: 'borrowed', references: [red] }).expect(400);
    const unknown = await generate(BOB, { prompt: 'borrowed', references: ['01939d2a-0000-7000-8000-000000000000'] }).expect(400);
    expect(foreign.body).toEqual({ statusCode: 400, code: 'UNKNOWN_REFERENCE', message: expect.any(String) });
    expect(unknown.body.code).toBe('UNKNOWN_REFERENCE');
    expect(((await http.get('/api/v1/generations?limit=100').set('x-api-key', BOB).expect(200)).body as Body).items).toHaveLength(before);
  });

  it.each([
    ['four references', { references: ['a', 'b', 'c', 'd'] }],
    ['a repeated reference', { references: ['a', 'a'] }],
    ['a reference that is not an id', { references: ['../x'] }],
    ['references that are not a list', { references: 'a' }],
    ['paletteHint that is not a boolean', { paletteHint: 'yes' }],
    ['paletteHint without references', { paletteHint: true }],
  ])('%s → 400 VALIDATION_FAILED', async (_name, extra) => {
    const res = await generate(ALICE, { prompt: 'x', ...extra }).expect(400);
    expect(res.body.code).toBe('VALIDATION_FAILED');
  });
});
