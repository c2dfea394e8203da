import { spawnSync } from 'node:child_process';
import { chmodSync, closeSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { NestExpressApplication } from '@nestjs/platform-express';
import request from 'supertest';
import { createApp } from '../../src/app.factory';
import { Generation, newQueuedGeneration } from '../../src/common/generation.model';
import { newGenerationId } from '../../src/common/ids';
import { loadConfig } from '../../src/config/app-config';
import { createDatabase, databaseFile } from '../../src/database/database';
import { GenerationsRepository } from '../../src/database/generations.repository';
import { STORAGE_DRIVER, type StorageDriver } from '../../src/storage/storage.driver';
import { STORAGE_CHECK_TTL_MS } from '../../src/storage/storage.service';
import { startTestGemini, type TestGemini } from '../support/gemini-emulator';

type Body = Record<string, any>;

/**
 * Readiness through the real app: it must say 503 whenever the service cannot do its work — an
 * image folder it cannot write to, a damaged database — and stay cheap under a storm of probes.
 */
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function eventually<T>(check: () => Promise<T | undefined>, what: string, timeoutMs = 20_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(25);
  }
}

async function appOn(dataDir: string): Promise<NestExpressApplication> {
  const config = loadConfig({ ...testGemini.env, DATA_DIR: dataDir, METRICS_PORT: '0', OTEL_SDK_DISABLED: 'true', LOG_LEVEL: 'silent', PALETTE_WORKERS: '1' });
  const app = await createApp(config, { logger: false });
  await app.init();
  return app;
}

/** The bundled Gemini emulator, reached by this file's apps through GEMINI_BASE_URL. */
let testGemini: TestGemini;
beforeAll(async () => {
  testGemini = await startTestGemini();
});
afterAll(async () => {
  await testGemini?.close();
});

describe('Readiness (e2e)', () => {
  let dataDir: string;
  let app: NestExpressApplication | undefined;

  beforeEach(() => {
    dataDir = mkdtempSync(join(tmpdir(), 'his-readiness-'));
  });

  afterEach(async () => {
    await app?.close();
    app = undefined;
    rmSync(dataDir, { recursive: true, force: true });
  });

  describe('an image folder that takes no writes', () => {
    const isRoot = process.getuid?.() === 0;
    let images: string;
    let mounted = false;

    /** Root ignores permission bits, so as root the folder becomes a read-only mount instead. */
    function makeReadOnly(): void {
      images = join(dataDir, 'images');
      mkdirSync(images, { recursive: true });
      if (isRoot) {
        const mount = spawnSync('mount', ['-t', 'tmpfs', '-o', 'ro,size=1m', 'tmpfs', images], { encoding: 'utf8' });
        if (mount.status !== 0) throw new Error(`mount -o ro failed: ${mount.stderr}`);
        mounted = true;
      } else {
        chmodSync(images, 0o555);
      }
    }

    function makeWritable(): void {
      if (mounted) {
        const umount = spawnSync('umount', [images], { encoding: 'utf8' });
        if (umount.status !== 0) spawnSync('umount', ['-l', images]);
        mounted = false;
      } else {
        chmodSync(images, 0o755);
      }
    }

    afterEach(async () => {
      await app?.close();
      app = undefined;
      if (images) makeWritable();
    });

    it('readiness answers 503 (storage down) while generations would fail STORAGE_ERROR, and 200 again once it is writable', async () => {
      makeReadOnly();
      app = await appOn(dataDir);
      const http = request(app.getHttpServer());

      const ready = await http.get('/health/ready');
      expect(ready.status).toBe(503);
      expect(ready.body).toMatchObject({ statusCode: 503, code: 'NOT_READY', details: { storage: { status: 'down', driver: 'local' } } });
      expect(ready.body.details.database).toMatchObject({ status: 'up' });

      // What readiness warns about: a generation cannot store its image.
      const accepted = await http.post('/api/v1/generations').set('Prefer', 'wait=30').send({ prompt: 'a quiet harbour' });
      expect(accepted.body).toMatchObject({ status: 'failed', error: { code: 'STORAGE_ERROR' } });

      makeWritable();
      await eventually(async () => ((await http.get('/health/ready')).status === 200 ? true : undefined), 'readiness to turn 200');
      const after = await http.post('/api/v1/generations').set('Prefer', 'wait=30').send({ prompt: 'a quiet harbour' });
      expect(after.body).toMatchObject({ status: 'succeeded' });
    });
  });

  it('a storm of readiness probes writes the storage probe at most once per STORAGE_CHECK_TTL_MS', async () => {
    app = await appOn(dataDir);
    const http = request(app.getHttpServer());
    const driver = app.get<StorageDriver>(STORAGE_DRIVER);
    const put = jest.spyOn(driver, 'put');
    try {
      const started = performance.now();
      const answers = await Promise.all(Array.from({ length: 40 }, () => http.get('/health/ready')));
      const elapsed = performance.now() - started;
      expect(answers.map((a) => a.status)).toEqual(Array(40).fill(200));
      // Probes start at least STORAGE_CHECK_TTL_MS apart, however long the storm took.
      expect(put.mock.calls.length).toBeGreaterThanOrEqual(1);
      expect(put.mock.calls.length).toBeLessThanOrEqual(Math.ceil(elapsed / STORAGE_CHECK_TTL_MS) + 1);
      expect(put.mock.calls.length).toBeLessThan(40);
    } finally {
      put.mockRestore();
    }
  });

  describe('a damaged database file (garbage written over one page of a copy)', () => {
    /**
     * 60 succeeded generations, then the page holding the 30th newest (on history page 2 at 20
     * per page) overwritten, as a failing disk or a bad copy might leave it.
     */
    async function damagedDatabase(): Promise<Generation[]> {
      const file = databaseFile(dataDir);
      const db = await createDatabase(file);
      const repository = new GenerationsRepository(db);
      const generations: Generation[] = [];
      for (let i = 0; i < 60; i++) {
        const prompt = `marker-${String(i).padStart(3, '0')} ${'a long prompt about a harbour at dawn, '.repeat(25)}`;
        const g: Generation = {
          ...newQueuedGeneration(newGenerationId(), 'gemini-2.5-flash-image', { prompt, aspectRatio: '1:1', count: 1, paletteSize: 5 }, { createdAt: new Date(Date.UTC(2026, 10, 1, 0, i)) }),
          status: 'succeeded',
          stage: 'done',
        };
        await repository.create(g);
        generations.push(g);
      }
      await db.destroy(); // checkpoints the WAL into the file
      const bytes = readFileSync(file);
      const victim = generations[60 - 30]!;
      const offset = bytes.indexOf(Buffer.from(victim.prompt.slice(0, 10)));
      expect(offset).toBeGreaterThan(0);
      const fd = openSync(file, 'r+');
      try {
        const pageSize = 4096;
        const page = Math.floor(offset / pageSize);
        writeSync(fd, Buffer.alloc(pageSize, 0xa5), 0, pageSize, page * pageSize);
      } finally {
        closeSync(fd);
      }
      return generations;
    }

    it('readiness answers 503 DATABASE_CORRUPT from the start; the damaged history page answers 503 DATABASE_CORRUPT, not 500; liveness stays 200', async () => {
      await damagedDatabase();
      app = await appOn(dataDir);
      const http = request(app.getHttpServer());

      const ready = await http.get('/health/ready');
      expect(ready.status).toBe(503);
      expect(ready.body.details.database).toEqual({ status: 'down', code: 'DATABASE_CORRUPT', message: expect.any(String) });
      expect((await http.get('/health/live')).status).toBe(200);

      const first = await http.get('/api/v1/generations?limit=20');
      expect(first.status).toBe(200);
      expect(first.body.items).toHaveLength(20);
      const second = await http.get(`/api/v1/generations?limit=20&cursor=${encodeURIComponent(first.body.nextCursor as string)}`);
      expect(second.status).toBe(503);
      expect(second.body).toEqual({ statusCode: 503, code: 'DATABASE_CORRUPT', message: expect.any(String) });
      expect(second.body.message).not.toContain(dataDir);
      expect((await http.get('/health/ready')).status).toBe(503);
      expect((await http.get('/health/live')).status).toBe(200);
    });
  });
});
