import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { NestExpressApplication } from '@nestjs/platform-express';
import request from 'supertest';
import { createApp } from '../../src/app.factory';
import { loadConfig } from '../../src/config/app-config';
import { startGeminiEmulator, type GeminiEmulator } from '../../src/gemini/emulator/emulator.server';
import { LostJobReconciler } from '../../src/pipeline/lost-job-reconciler';
import { createTestDatabase, type TestDatabase } from '../support/postgres';
import { deleteKeys, TEST_REDIS_URL, uniquePrefix } from '../support/redis';

type Body = Record<string, any>;

/**
 * Redis keeps nothing on disk here: after a Redis restart the queue is empty while PostgreSQL still
 * has queued generations. The reconciler records those images INTERRUPTED, and leaves alone every
 * image whose job a worker still holds.
 */
describe('LostJobReconciler (real PostgreSQL and Redis)', () => {
  let db: TestDatabase;
  let emulator: GeminiEmulator;
  let dataDir: string;
  const prefix = uniquePrefix('reconcile');
  const apps: NestExpressApplication[] = [];

  const start = async (role: 'api' | 'worker') => {
    const config = loadConfig({
      DATABASE_URL: db.url,
      REDIS_URL: TEST_REDIS_URL,
      REDIS_PREFIX: prefix,
      ROLE: role,
      GEMINI_BASE_URL: emulator.url,
      GEMINI_API_KEY: 'test-key',
      DATA_DIR: dataDir,
      METRICS_PORT: '0',
      OTEL_SDK_DISABLED: 'true',
      LOG_LEVEL: 'silent',
      PALETTE_WORKERS: '1',
    });
    const app = await createApp(config, { logger: false });
    await app.init();
    apps.push(app);
    return app;
  };

  beforeAll(async () => {
    db = await createTestDatabase();
    emulator = await startGeminiEmulator({ host: '127.0.0.1', port: 0 });
    dataDir = mkdtempSync(join(tmpdir(), 'his-reconcile-'));
  });

  afterAll(async () => {
    for (const app of apps.splice(0)) await app.close();
    await deleteKeys(prefix);
    await emulator?.close();
    await db?.drop();
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('records images whose jobs the queue lost INTERRUPTED; a job a worker holds is left alone', async () => {
    // No worker yet: the generation's job waits in Redis. Then Redis "restarts empty".
    const api = await start('api');
    const http = request(api.getHttpServer());
    const lost = (await http.post('/api/v1/generations').send({ prompt: 'lost with Redis', count: 2 }).expect(202)).body as Body;
    await deleteKeys(prefix);

    const worker = await start('worker');
    // A generation whose job a worker is running right now.
    const running = (await http.post('/api/v1/generations').send({ prompt: 'still running [emulator:hang]' }).expect(202)).body as Body;
    for (let i = 0; i < 400 && (((await http.get(`/api/v1/generations/${running.id}`)).body as Body).stage !== 'gemini'); i++) {
      await new Promise((r) => setTimeout(r, 25));
    }

    expect(await worker.get(LostJobReconciler).reconcileOnce(0)).toBe(2);
    const after = (await http.get(`/api/v1/generations/${lost.id}`).expect(200)).body as Body;
    expect(after).toMatchObject({ status: 'failed', images: [], error: { code: 'INTERRUPTED' } });
    expect(((await http.get(`/api/v1/generations/${running.id}`).expect(200)).body as Body).status).toBe('running');
    await http.post(`/api/v1/generations/${running.id}/cancel`).expect(200);
  });
});
