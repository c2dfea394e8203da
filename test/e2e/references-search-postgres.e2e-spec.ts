import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { NestExpressApplication } from '@nestjs/platform-express';
import request from 'supertest';
import { createApp } from '../../src/app.factory';
import { loadConfig } from '../../src/config/app-config';
import { encode, regionsRaw } from '../support/images';
import { createTestDatabase, TestDatabase, withClient } from '../support/postgres';
import { startTestGemini, type TestGemini } from '../support/gemini-emulator';

type Body = Record<string, any>;

const ALICE = 'alice-key-0123456789abcdef';
const BOB = 'bob-key-0123456789abcdef';

/**
 * The reference library and search through the real app with DATABASE_URL on a fresh PostgreSQL
 * database: upload, search by text, colour, both and similarTo, ownership, delete — as on SQLite,
 * with the records and the index in PostgreSQL.
 */
describe('References and search on PostgreSQL (e2e)', () => {
  let testGemini: TestGemini | undefined;
  let testDb: TestDatabase;
  let dataDir: string;
  let app: NestExpressApplication;
  let http: ReturnType<typeof request>;

  beforeAll(async () => {
    testDb = await createTestDatabase();
    dataDir = mkdtempSync(join(tmpdir(), 'his-pg-search-'));
    const config = loadConfig({
      ...(testGemini = await startTestGemini()).env,
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
    await testGemini?.close();
  });

  it('upload, search by text, colour, both and similarTo, per key, then delete', async () => {
    const png = await encode(regionsRaw([{ hex: '#2e8b3c', share: 0.7 }, { hex: '#f2e8cf', share: 0.3 }], { width: 64, height: 48 }), 'png');
    const ref = (await http.post('/api/v1/references').set('x-api-key', ALICE).attach('image', png, 'moss.png').field('title', 'Mossy stones').field('tags', 'forest, green').expect(201))
      .body as Body;
    const gen = (await http.post('/api/v1/generations').set('x-api-key', ALICE).set('Prefer', 'wait=60').send({ prompt: 'a solid green forest' }).expect(201)).body as Body;
    const ids = async (query: string, key = ALICE) => (((await http.get(`/api/v1/search?${query}`).set('x-api-key', key).expect(200)).body as Body).items as Body[]).map((i) => i.id);

    expect(await ids('q=mossy')).toEqual([ref.id]);
    expect((await ids('q=forest')).sort()).toEqual([ref.id, gen.id].sort());
    expect((await ids('color=%232e8b3c:70&color=%23f2e8cf:30'))[0]).toBe(ref.id);
    expect((await ids('q=forest&color=%232e8b3c&kind=reference'))).toEqual([ref.id]);
    expect(await ids(`similarTo=reference:${ref.id}`)).toEqual([gen.id]);

    expect(await ids('q=forest', BOB)).toEqual([]);
    expect(await ids('color=%232e8b3c', BOB)).toEqual([]);
    await http.get(`/api/v1/references/${ref.id}`).set('x-api-key', BOB).expect(404);
    await http.get(`/api/v1/search?similarTo=reference:${ref.id}`).set('x-api-key', BOB).expect(404);

    const { rows } = await withClient(testDb.url, (c) => c.query('select kind, owner from search_items order by kind'));
    expect(rows).toEqual([
      { kind: 'generation', owner: 'alice' },
      { kind: 'reference', owner: 'alice' },
    ]);

    await http.delete(`/api/v1/references/${ref.id}`).set('x-api-key', ALICE).expect(204);
    expect(await ids('q=mossy')).toEqual([]);
    const left = await withClient(testDb.url, (c) => c.query('select (select count(*) from reference_images)::int as refs, (select count(*) from storage_sweep)::int as sweep'));
    expect(left.rows).toEqual([{ refs: 0, sweep: 0 }]);
  });
});
