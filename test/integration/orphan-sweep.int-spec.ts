import { existsSync, readdirSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ListObjectsV2Command, S3Client } from '@aws-sdk/client-s3';
import type { NestExpressApplication } from '@nestjs/platform-express';
import request from 'supertest';
import { createApp } from '../../src/app.factory';
import { Generation, newQueuedGeneration } from '../../src/common/generation.model';
import { newGenerationId } from '../../src/common/ids';
import { loadConfig } from '../../src/config/app-config';
import { createDatabase, databaseFile } from '../../src/database/database';
import { GenerationsRepository } from '../../src/database/generations.repository';
import { OrphanSweep } from '../../src/pipeline/orphan-sweep';
import { S3Driver } from '../../src/storage/s3.driver';
import { generationImagePrefix } from '../../src/storage/storage-keys';
import { startGeminiGate, type GeminiGate } from '../support/gemini-gate';
import { S3RVER_CREDENTIALS, startS3rver, useS3rverCredentials, type S3rverHandle } from '../support/s3rver';
import { startService, type ServiceProcess } from '../support/service-process';
import { startTestGemini, type TestGemini } from '../support/gemini-emulator';

type Body = Record<string, any>;

/**
 * Images of generations that never finished (the process was killed between an upload and the
 * record's final write) are removed at the next start: start-up recovery marks the generation
 * INTERRUPTED and the sweep clears its key prefix. Images that succeeded generations reference,
 * and anything else in the store, stay.
 */
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function eventually<T>(check: () => Promise<T | undefined> | T | undefined, what: string, timeoutMs = 20_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(25);
  }
}

/** Image files stored for generation `id` in the local image folder (no temp or sidecar files). */
function storedFiles(dataDir: string, id: string): string[] {
  const root = join(dataDir, 'images');
  if (!existsSync(root)) return [];
  return (readdirSync(root, { recursive: true }) as string[]).filter((p) => p.includes(id) && /\/\d+\.\w+$/.test(p));
}

/** The bundled Gemini emulator, reached by this file's apps through GEMINI_BASE_URL. */
let testGemini: TestGemini;
beforeAll(async () => {
  testGemini = await startTestGemini();
});
afterAll(async () => {
  await testGemini?.close();
});

describe('Orphan sweep at start (integration)', () => {
  describe('the built service, SIGKILLed while a generation had stored one of its two images', () => {
    let gate: GeminiGate;
    let dataDir: string;
    const services: ServiceProcess[] = [];

    beforeAll(async () => {
      gate = await startGeminiGate();
      dataDir = await mkdtemp(join(tmpdir(), 'his-orphans-'));
    });

    afterAll(async () => {
      await Promise.allSettled(services.map((s) => s.stop('SIGKILL')));
      await gate?.close();
      await rm(dataDir, { recursive: true, force: true });
    });

    const start = async () => {
      const svc = await startService({
        DATA_DIR: dataDir,
        GEMINI_BASE_URL: gate.url,
        GEMINI_API_KEY: 'test-key',
        OTEL_SDK_DISABLED: 'true',
        METRICS_PORT: '0',
        PALETTE_WORKERS: '1',
      });
      services.push(svc);
      const url = (path: string) => `${svc.baseUrl}${path}`;
      return {
        svc,
        post: async (body: Body) =>
          (await (
            await fetch(url('/api/v1/generations'), { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })
          ).json()) as Body,
        generation: async (id: string) => (await (await fetch(url(`/api/v1/generations/${id}`))).json()) as Body,
      };
    };

    it('the next start marks it INTERRUPTED and deletes its stored image; a succeeded generation keeps its images', async () => {
      const first = await start();
      const kept = await first.post({ prompt: 'a lighthouse, kept' });
      await gate.untilWaiting(1);
      gate.release();
      await eventually(async () => ((await first.generation(kept.id)).status === 'succeeded' ? true : undefined), 'the first generation');
      expect(storedFiles(dataDir, kept.id)).toHaveLength(1);

      // Two images: the first goes through (stored, palette made), the second waits at the gate,
      // so the generation is running with one image file on disk and no record pointing at it.
      const cut = await first.post({ prompt: 'a lighthouse, cut short', count: 2 });
      await gate.untilWaiting(2);
      gate.release();
      await eventually(() => (storedFiles(dataDir, cut.id).length === 1 ? true : undefined), 'the first image to be stored');
      expect((await first.generation(cut.id)).status).toBe('running');
      expect(await first.svc.stop('SIGKILL')).toEqual({ code: null, signal: 'SIGKILL' });
      expect(storedFiles(dataDir, cut.id)).toHaveLength(1);

      const second = await start();
      await eventually(() => (second.svc.logs().includes('Swept 1 stored image(s) of 1 interrupted generation(s)') ? true : undefined), 'the sweep');
      expect(second.svc.logs()).toMatch(/Marked 1 unfinished generation/);
      expect(storedFiles(dataDir, cut.id)).toEqual([]);
      expect(await second.generation(cut.id)).toMatchObject({ status: 'failed', images: [], error: { code: 'INTERRUPTED' } });
      expect(storedFiles(dataDir, kept.id)).toHaveLength(1);
      const keptNow = await second.generation(kept.id);
      expect(keptNow.status).toBe('succeeded');
      expect((await fetch(`${second.svc.baseUrl}${keptNow.images[0].url as string}`)).status).toBe(200);
    });
  });

  describe('S3 (s3rver): listed by each interrupted generation’s prefix', () => {
    let s3: S3rverHandle;
    let dataDir: string;
    let app: NestExpressApplication | undefined;
    const bucket = 'sweep-images';

    beforeAll(async () => {
      useS3rverCredentials();
      s3 = await startS3rver({ bucket });
    });

    beforeEach(async () => {
      dataDir = await mkdtemp(join(tmpdir(), 'his-orphans-s3-'));
    });

    afterEach(async () => {
      await app?.close();
      app = undefined;
      await rm(dataDir, { recursive: true, force: true });
    });

    afterAll(async () => {
      await s3?.dispose();
    });

    const s3Settings = () => ({ bucket, endpoint: s3.endpoint, region: undefined, forcePathStyle: true, presign: false });

    async function startApp(): Promise<NestExpressApplication> {
      const config = loadConfig({
        ...testGemini.env,
        DATA_DIR: dataDir,
        S3_BUCKET: bucket,
        S3_ENDPOINT: s3.endpoint,
        S3_FORCE_PATH_STYLE: 'true',
        METRICS_PORT: '0',
        OTEL_SDK_DISABLED: 'true',
        LOG_LEVEL: 'silent',
        PALETTE_WORKERS: '1',
      });
      const started = await createApp(config, { logger: false });
      await started.init();
      return started;
    }

    async function seed(generations: Generation[]): Promise<void> {
      const db = await createDatabase(databaseFile(dataDir));
      const repository = new GenerationsRepository(db);
      for (const g of generations) await repository.create(g);
      await db.destroy();
    }

    function generation(overrides: Partial<Generation>): Generation {
      const input = { prompt: 'a harbour', aspectRatio: '1:1' as const, count: 2, paletteSize: 5 };
      return { ...newQueuedGeneration(newGenerationId(), 'gemini-2.5-flash-image', input, { createdAt: new Date('2026-11-29T23:59:00Z') }), ...overrides };
    }

    async function keys(): Promise<string[]> {
      const client = new S3Client({ endpoint: s3.endpoint, region: 'us-east-1', forcePathStyle: true, credentials: S3RVER_CREDENTIALS });
      try {
        const out = await client.send(new ListObjectsV2Command({ Bucket: bucket }));
        return (out.Contents ?? []).map((o) => o.Key!).sort();
      } finally {
        client.destroy();
      }
    }

    it('deletes the objects of the generations recovery marks INTERRUPTED, and nothing else', async () => {
      // What a killed process leaves: records still running/queued, their objects in the bucket.
      const interrupted = generation({ status: 'running', stage: 'palette', startedAt: new Date('2026-11-30T00:00:01Z') });
      const neverStarted = generation({});
      const succeeded = generation({ status: 'succeeded', stage: 'done', completedAt: new Date('2026-11-30T00:00:05Z') });
      const failedBefore = generation({ status: 'failed', stage: 'upload', error: { code: 'STORAGE_ERROR', message: 'x' } });
      const succeededKey = `${generationImagePrefix(succeeded.id, succeeded.createdAt)}0.png`;
      succeeded.images = [{ index: 0, key: succeededKey, mimeType: 'image/png', width: 1, height: 1, bytes: 3, palette: [] }];
      await seed([interrupted, neverStarted, succeeded, failedBefore]);

      const driver = new S3Driver(s3Settings());
      const interruptedPrefix = generationImagePrefix(interrupted.id, interrupted.createdAt);
      const unrelated = `${generationImagePrefix(failedBefore.id, failedBefore.createdAt)}0.png`;
      for (const key of [`${interruptedPrefix}0.png`, `${interruptedPrefix}1.webp`, succeededKey, unrelated, 'elsewhere/notes.txt']) {
        await driver.put(key, Buffer.from('png'), 'image/png');
      }
      await driver.close();

      app = await startApp();

      await expect(app.get(OrphanSweep).done).resolves.toEqual({ generations: 2, deleted: 2, failed: 0, skipped: 0 });
      expect(await keys()).toEqual([succeededKey, unrelated, 'elsewhere/notes.txt'].sort());

      // Readiness writes its probe object and removes it again.
      const http = request(app.getHttpServer());
      expect((await http.get('/health/ready')).status).toBe(200);
      expect(await keys()).toEqual([succeededKey, unrelated, 'elsewhere/notes.txt'].sort());
      expect((await http.get(`/api/v1/generations/${interrupted.id}`)).body).toMatchObject({ status: 'failed', error: { code: 'INTERRUPTED' } });
    });

    it('with the store down, the start goes on; the sweep gives up after 3 failures in a row', async () => {
      await seed(Array.from({ length: 20 }, () => generation({ status: 'running', stage: 'upload' })));
      await s3.stop();
      try {
        app = await startApp();
        const result = await app.get(OrphanSweep).done;
        // 4 run at once, and no new one starts after the third failure in a row: at most 4 + 2 tried.
        expect(result).toMatchObject({ generations: 20, deleted: 0 });
        expect(result.failed).toBeGreaterThanOrEqual(3);
        expect(result.failed).toBeLessThanOrEqual(6);
        expect(result.skipped).toBe(20 - result.failed);
        expect((await request(app.getHttpServer()).get('/health/live')).status).toBe(200);
      } finally {
        await s3.restart();
      }
    });
  });
});
