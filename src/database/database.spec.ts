import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sql } from 'kysely';
import { createDatabase, DATABASE_FILE_NAME, databaseFile, migrateToLatest } from './database';
import { MIGRATIONS } from './migrations';

describe('createDatabase', () => {
  let dir: string;

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'his-db-'));
  });

  afterEach(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  it('creates the data folder and file under DATA_DIR and migrates it', async () => {
    const file = databaseFile(join(dir, 'nested', 'data'));
    expect(file).toBe(join(dir, 'nested', 'data', DATABASE_FILE_NAME));
    const db = await createDatabase(file);
    try {
      expect(existsSync(file)).toBe(true);
      const columns = (await sql<{ name: string; notnull: number; pk: number }>`PRAGMA table_info(generations)`.execute(db)).rows;
      expect(columns.map((c) => c.name)).toEqual([
        'id',
        'status',
        'stage',
        'prompt',
        'model',
        'aspect_ratio',
        'count',
        'palette_size',
        'created_at',
        'started_at',
        'completed_at',
        'timings',
        'images',
        'input_tokens',
        'output_tokens',
        'error_code',
        'error_message',
        'updated_at',
        'owner',
        'client',
        'reference_ids',
        'palette_hint',
      ]);
      expect(columns.find((c) => c.name === 'id')?.pk).toBe(1);
      const indexes = (await sql<{ name: string }>`PRAGMA index_list(generations)`.execute(db)).rows.map((r) => r.name);
      expect(indexes).toEqual(
        expect.arrayContaining(['generations_created_at_id_idx', 'generations_status_idx', 'generations_owner_created_at_id_idx', 'generations_active_client_idx']),
      );
      const keyColumns = (await sql<{ name: string; desc: number }>`PRAGMA index_xinfo(generations_created_at_id_idx)`.execute(db)).rows
        .filter((r) => r.name !== null)
        .map((r) => [r.name, r.desc]);
      expect(keyColumns).toEqual([
        ['created_at', 1],
        ['id', 1],
      ]);
    } finally {
      await db.destroy();
    }
  });

  it('migrates idempotently: a second run and a reopen apply nothing and keep the data', async () => {
    const file = databaseFile(dir);
    const db = await createDatabase(file);
    await sql`insert into generations (id, status, stage, prompt, model, aspect_ratio, count, palette_size, created_at, updated_at)
              values ('g1', 'queued', 'queued', 'p', 'm', '1:1', 1, 5, 1, 1)`.execute(db);
    expect(await migrateToLatest(db)).toEqual([]);
    await db.destroy();

    const reopened = await createDatabase(file);
    try {
      expect(await migrateToLatest(reopened)).toEqual([]);
      const applied = await sql<{ name: string }>`select name from kysely_migration order by name`.execute(reopened);
      expect(applied.rows.map((r) => r.name)).toEqual(Object.keys(MIGRATIONS).sort());
      const rows = await reopened.selectFrom('generations').select('id').execute();
      expect(rows).toEqual([{ id: 'g1' }]);
    } finally {
      await reopened.destroy();
    }
  });

  it('re-runs the first migration safely after a start that died half-way', async () => {
    // Simulate a crash after the table was created but before the migration was recorded.
    const file = databaseFile(dir);
    const db = await createDatabase(file);
    await sql`delete from kysely_migration`.execute(db);
    await sql`drop index generations_status_idx`.execute(db);
    await db.destroy();

    const reopened = await createDatabase(file);
    try {
      const indexes = (await sql<{ name: string }>`PRAGMA index_list(generations)`.execute(reopened)).rows.map((r) => r.name);
      expect(indexes).toContain('generations_status_idx');
      const applied = await sql<{ name: string }>`select name from kysely_migration`.execute(reopened);
      expect(applied.rows).toHaveLength(Object.keys(MIGRATIONS).length);
    } finally {
      await reopened.destroy();
    }
  });

  it('works in memory', async () => {
    const db = await createDatabase(':memory:');
    try {
      const { rows } = await sql<{ n: number }>`select count(*) as n from generations`.execute(db);
      expect(rows).toEqual([{ n: 0 }]);
    } finally {
      await db.destroy();
    }
  });

  it('fails loudly when the file cannot be opened', async () => {
    // A directory where the file should be: SQLite cannot open it.
    const file = join(dir, 'is-a-dir');
    mkdirSync(file);
    await expect(createDatabase(file)).rejects.toThrow();
  });
});
