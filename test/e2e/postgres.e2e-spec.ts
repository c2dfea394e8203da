import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { NestExpressApplication } from '@nestjs/platform-express';
import request from 'supertest';
import { createApp } from '../../src/app.factory';
import { loadConfig } from '../../src/config/app-config';
import { DATABASE_FILE_NAME } from '../../src/database/database';
import { createTestDatabase, TestDatabase, withClient } from '../support/postgres';
import { startTestGemini, type TestGemini } from '../support/gemini-emulator';

type Body = Record<string, any>;

const ALICE = 'alice-key-0123456789abcdef';
const BOB = 'bob-key-0123456789abcdef';

/** The bundled Gemini emulator, reached by this file's apps through GEMINI_BASE_URL. */
let testGemini: TestGemini;
beforeAll(async () => {
  testGemini = await startTestGemini();
});
afterAll(async () => {
  await testGemini?.close();
});

/**
 * The real app with DATABASE_URL set to a fresh PostgreSQL database: the core flows behave as on
 * SQLite (create with Prefer: wait, read, list per key, cancel), and the records are in PostgreSQL.
 */
describe('Generations API on PostgreSQL (e2e)', () => {
  let testDb: TestDatabase;
  let dataDir: string;
  let app: NestExpressApplication;
  let http: ReturnType<typeof request>;

  beforeAll(async () => {
    testDb = await createTestDatabase();
    dataDir = mkdtempSync(join(tmpdir(), 'his-pg-e2e-'));
    const config = loadConfig({
      ...testGemini.env,
      DATA_DIR: dataDir,
      DATABASE_URL: testDb.url,
      API_KEYS: `alice:${ALICE},bob:${BOB}`,
      METRICS_PORT: '0',
      OTEL_SDK_DISABLED: 'true',
      LOG_LEVEL: 'silent',
      PALETTE_WORKERS: '1',
    });
    app = await createApp(config, { logger: false });
    await app.init();
    http = request(app.getHttpServer());
  });

  afterAll(async () => {
    await app?.close();
    await testDb?.drop();
    if (dataDir) rmSync(dataDir, { recursive: true, force: true });
  });

  it('creates with Prefer: wait, reads it back identically, and keeps it from another key', async () => {
    const created = await http.post('/api/v1/generations').set('x-api-key', ALICE).set('Prefer', 'wait=60').send({ prompt: 'a red apple on a blue table', count: 2, paletteSize: 3 }).expect(201);
    const g = created.body as Body;
    expect(g).toMatchObject({ status: 'succeeded', stage: 'done', count: 2, error: null });
    expect(g.images).toHaveLength(2);
    expect(g.images[0].palette).toHaveLength(3);
    expect(new Date(g.createdAt).getTime()).toBeLessThanOrEqual(new Date(g.completedAt).getTime());

    const read = await http.get(created.headers.location).set('x-api-key', ALICE).expect(200);
    expect(read.body).toEqual(g);
    await http.get(`/api/v1/generations/${g.id}/images/1`).set('x-api-key', ALICE).expect(200).expect('content-type', 'image/png');
    await http.get(`/api/v1/generations/${g.id}`).set('x-api-key', BOB).expect(404);

    const row = await withClient(testDb.url, async (c) => (await c.query('select owner, status, created_at from generations where id = $1', [g.id])).rows[0]);
    expect(row).toEqual({ owner: 'alice', status: 'succeeded', created_at: String(new Date(g.createdAt).getTime()) });
    expect(existsSync(join(dataDir, DATABASE_FILE_NAME))).toBe(false);
  });

  it("lists each key's history newest first with a working cursor", async () => {
    const ids: string[] = [];
    for (const colour of ['orange', 'purple', 'teal']) {
      ids.push(((await http.post('/api/v1/generations').set('x-api-key', BOB).set('Prefer', 'wait=60').send({ prompt: `a ${colour} circle` }).expect(201)).body as Body).id);
    }
    const first = (await http.get('/api/v1/generations?limit=2').set('x-api-key', BOB).expect(200)).body as Body;
    expect(first.items.map((g: Body) => g.id)).toEqual([ids[2], ids[1]]);
    const second = (await http.get(`/api/v1/generations?limit=2&cursor=${encodeURIComponent(first.nextCursor)}`).set('x-api-key', BOB).expect(200)).body as Body;
    expect(second).toEqual({ items: [expect.objectContaining({ id: ids[0] })], nextCursor: null });

    const alices = (await http.get('/api/v1/generations?limit=100').set('x-api-key', ALICE).expect(200)).body as Body;
    const aliceIds = alices.items.map((g: Body) => g.id) as string[];
    expect(aliceIds.length).toBeGreaterThanOrEqual(1);
    for (const id of ids) expect(aliceIds).not.toContain(id);
    await http.get('/api/v1/generations?cursor=garbage').set('x-api-key', BOB).expect(400);
  });

  it('cancels a running generation, refuses a second cancel, and keeps it from another key', async () => {
    const { body } = await http.post('/api/v1/generations').set('x-api-key', ALICE).send({ prompt: 'a blue whale [emulator:hang]' }).expect(202);
    await http.post(`/api/v1/generations/${body.id}/cancel`).set('x-api-key', BOB).expect(404);
    const canceled = await http.post(`/api/v1/generations/${body.id}/cancel`).set('x-api-key', ALICE).expect(200);
    expect(canceled.body).toMatchObject({ status: 'canceled', error: { code: 'CANCELED' }, images: [] });
    const again = await http.post(`/api/v1/generations/${body.id}/cancel`).set('x-api-key', ALICE).expect(409);
    expect(again.body.code).toBe('GENERATION_FINISHED');
    expect((await http.get(`/api/v1/generations/${body.id}`).set('x-api-key', ALICE).expect(200)).body).toEqual(canceled.body);
  });

  it('is ready with the database up', async () => {
    const ready = await http.get('/health/ready').expect(200);
    expect(ready.body.details.database).toEqual({ status: 'up' });
  });
});
