import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { Logger } from '@nestjs/common';
import { Generation, newQueuedGeneration } from '../common/generation.model';
import { newGenerationId } from '../common/ids';
import { loadConfig } from '../config/app-config';
import { createDatabase, Database } from '../database/database';
import { GenerationPatch, GenerationsRepository } from '../database/generations.repository';
import { LocalDriver } from '../storage/local.driver';
import { StorageService } from '../storage/storage.service';
import { AppMetrics } from '../telemetry/app-metrics';
import { PendingFinalWrites } from './final-writes';
import { GenerationEvents } from './generation-events';

/** PendingFinalWrites against a real SQLite file (locked by a second real connection) and a real image folder. */
describe('PendingFinalWrites', () => {
  let dir: string;
  let db: Database;
  let repository: GenerationsRepository;
  let storage: StorageService;
  let events: GenerationEvents;
  let writes: PendingFinalWrites;
  let lock: DatabaseSync | undefined;

  beforeAll(() => Logger.overrideLogger(false));

  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), 'his-final-writes-'));
    const file = join(dir, 'db.sqlite');
    db = await createDatabase(file, { busyTimeoutMs: 0 });
    repository = new GenerationsRepository(db);
    storage = new StorageService(new LocalDriver(dir), loadConfig({ DATA_DIR: dir }), new AppMetrics());
    events = new GenerationEvents();
    writes = new PendingFinalWrites(repository, events, storage, new AppMetrics());
  });

  afterEach(async () => {
    await writes.onModuleDestroy();
    if (lock?.isOpen) lock.close();
    lock = undefined;
    await db.destroy();
    rmSync(dir, { recursive: true, force: true });
  });

  function lockDatabase(): void {
    lock = new DatabaseSync(join(dir, 'db.sqlite'));
    lock.exec('BEGIN IMMEDIATE');
  }

  async function running(): Promise<Generation> {
    const g: Generation = { ...newQueuedGeneration(newGenerationId(), 'm', { prompt: 'p', aspectRatio: '1:1', count: 1, paletteSize: 5 }), status: 'running', stage: 'palette' };
    await repository.create(g);
    return g;
  }

  const succeededPatch = (key: string): GenerationPatch => ({
    status: 'succeeded',
    stage: 'done',
    completedAt: new Date(),
    error: null,
    images: [{ index: 0, key, mimeType: 'image/png', width: 1, height: 1, bytes: 3, palette: [] }],
  });

  it('while the database stays locked, each round publishes the final state again; the first round after the lock writes it', async () => {
    const g = await running();
    const patch = succeededPatch('images/2026/11/30/x/0.png');
    const seen: Generation[] = [];
    events.subscribe(g.id, (e) => seen.push(e));
    lockDatabase();

    writes.add({ ...g, ...patch }, patch);
    await writes.flush();
    expect(writes.size).toBe(1);
    expect(seen.at(-1)).toMatchObject({ id: g.id, status: 'succeeded' });
    expect(await repository.findById(g.id, null)).toMatchObject({ status: 'running' });

    lock!.exec('ROLLBACK');
    await writes.flush();
    expect(writes.size).toBe(0);
    expect(await repository.findById(g.id, null)).toMatchObject({ status: 'succeeded', stage: 'done', images: patch.images });
    expect(seen.every((e) => e.status === 'succeeded')).toBe(true);
    expect(seen.at(-1)).toEqual(await repository.findById(g.id, null));
  });

  it('a record finished elsewhere first (a cancel) keeps that state, and the images this one would have referenced are deleted', async () => {
    const g = await running();
    const key = storage.keyFor(g.id, 0, 'image/png', g.createdAt);
    await storage.put(key, Buffer.from('png'), 'image/png');
    const patch = succeededPatch(key);
    lockDatabase();
    writes.add({ ...g, ...patch }, patch);
    await writes.flush();
    expect(writes.size).toBe(1);
    // The cancel gets in first: written by the connection that held the lock, then committed.
    lock!.prepare(`UPDATE generations SET status = 'canceled', error_code = 'CANCELED', error_message = 'canceled' WHERE id = ?`).run(g.id);
    lock!.exec('COMMIT');

    await writes.flush();
    expect(writes.size).toBe(0);
    expect(await repository.findById(g.id, null)).toMatchObject({ status: 'canceled', images: [] });
    expect(existsSync(join(dir, key))).toBe(false);
  });

  it('kick() retries at once when another write has just worked', async () => {
    const g = await running();
    const patch = succeededPatch('images/2026/11/30/y/0.png');
    lockDatabase();
    writes.add({ ...g, ...patch }, patch);
    await writes.flush();
    lock!.exec('ROLLBACK');

    const written = new Promise<Generation>((resolve) => events.subscribe(g.id, (e) => e.status === 'succeeded' && resolve(e)));
    writes.kick();
    await written;
    expect(await repository.findById(g.id, null)).toMatchObject({ status: 'succeeded' });
  });
});
