import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Logger } from '@nestjs/common';
import { Test, TestingModule } from '@nestjs/testing';
import { Generation, newQueuedGeneration } from '../../src/common/generation.model';
import { newGenerationId } from '../../src/common/ids';
import { loadConfig } from '../../src/config/app-config';
import { ConfigModule } from '../../src/config/config.module';
import { DATABASE_FILE_NAME } from '../../src/database/database';
import { DatabaseModule } from '../../src/database/database.module';
import { GenerationsRecovery } from '../../src/database/generations.recovery';
import { GenerationsRepository } from '../../src/database/generations.repository';

function generation(overrides: Partial<Generation>): Generation {
  return {
    ...newQueuedGeneration(newGenerationId(), 'gemini-2.5-flash-image', { prompt: 'a red bicycle', aspectRatio: '1:1', count: 1, paletteSize: 5 }),
    ...overrides,
  };
}

/** Boots the database the way the app does: ConfigModule + DatabaseModule, lifecycle hooks included. */
async function start(dataDir: string): Promise<TestingModule> {
  const moduleRef = await Test.createTestingModule({
    imports: [ConfigModule.forRoot(loadConfig({ DATA_DIR: dataDir })), DatabaseModule],
  }).compile();
  moduleRef.useLogger(false);
  return moduleRef.init();
}

describe('database across a restart (file in DATA_DIR, DatabaseModule)', () => {
  let dataDir: string;
  let warn: jest.SpyInstance;

  beforeEach(() => {
    dataDir = mkdtempSync(join(tmpdir(), 'his-restart-'));
    warn = jest.spyOn(Logger.prototype, 'warn');
  });

  afterEach(() => {
    warn.mockRestore();
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('fails generations left queued or running with INTERRUPTED and leaves finished ones alone', async () => {
    const running = generation({ status: 'running', stage: 'upload', startedAt: new Date(Date.now() - 500) });
    const queued = generation({ status: 'queued' });
    const succeeded = generation({
      status: 'succeeded',
      stage: 'done',
      startedAt: new Date(Date.now() - 3000),
      completedAt: new Date(Date.now() - 1000),
      images: [
        {
          index: 0,
          key: 'generations/s/0.png',
          mimeType: 'image/png',
          width: 1024,
          height: 1024,
          bytes: 2048,
          palette: [{ hex: '#102030', rgb: [16, 32, 48], proportion: 1 }],
        },
      ],
      usage: { inputTokens: 3, outputTokens: 1290 },
    });

    const first = await start(dataDir);
    const before = first.get(GenerationsRepository);
    for (const g of [running, queued, succeeded]) await before.create(g);
    // Nothing was unfinished at this first start.
    expect(warn).not.toHaveBeenCalled();
    await first.close();
    await expect(before.ping()).rejects.toThrow();
    expect(existsSync(join(dataDir, DATABASE_FILE_NAME))).toBe(true);

    const startedAt = Date.now();
    const second = await start(dataDir);
    try {
      const repo = second.get(GenerationsRepository);
      await expect(repo.ping()).resolves.toBeUndefined();

      for (const g of [running, queued]) {
        const after = await repo.findById(g.id, null);
        expect(after).toEqual({
          ...g,
          status: 'failed',
          completedAt: expect.any(Date),
          error: { code: 'INTERRUPTED', message: 'The service stopped while this generation was in progress' },
        });
        expect(after!.completedAt!.getTime()).toBeGreaterThanOrEqual(startedAt);
      }
      expect(await repo.findById(running.id, null)).toMatchObject({ stage: 'upload' });
      expect(await repo.findById(succeeded.id, null)).toEqual(succeeded);
      expect(await repo.countByStatus()).toEqual({ queued: 0, running: 0, succeeded: 1, failed: 2, canceled: 0 });
      expect(warn).toHaveBeenCalledWith(expect.stringContaining('2 unfinished generation'));

      // Recovery is idempotent: running it again finds nothing.
      expect(await second.get(GenerationsRecovery).recover()).toEqual([]);
    } finally {
      await second.close();
    }
  });
});
