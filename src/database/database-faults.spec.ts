import { closeSync, mkdtempSync, openSync, rmSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { Logger } from '@nestjs/common';
import { Generated, Kysely, sql } from 'kysely';
import { AppError } from '../common/app-error';
import { createDatabase } from './database';
import { DatabaseFaults } from './database-faults';
import { DatabaseBusyError, DatabaseCorruptError, DatabaseFullError } from './database.errors';
import { NodeSqliteDialect, openSqlite, SQLITE_SERVING_BUSY_TIMEOUT_MS } from './node-sqlite.dialect';

interface TestSchema {
  items: { id: Generated<number>; name: string };
}

/**
 * How the SQLite layer behaves when the database is locked by another connection, full or
 * damaged: real SQLite files, a second real connection holding the lock.
 */
describe('SQLite faults (NodeSqliteDialect, createDatabase)', () => {
  let dir: string;
  let file: string;
  const open: { destroy(): Promise<void> }[] = [];
  const others: DatabaseSync[] = [];

  beforeAll(() => Logger.overrideLogger(false));

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'his-db-faults-'));
    file = join(dir, 'items.sqlite');
  });

  afterEach(async () => {
    for (const db of open.splice(0)) await db.destroy();
    for (const other of others.splice(0)) if (other.isOpen) other.close();
    rmSync(dir, { recursive: true, force: true });
  });

  async function openItems(options: { busyTimeoutMs?: number; faults?: DatabaseFaults } = {}): Promise<Kysely<TestSchema>> {
    const handle = openSqlite(file);
    handle.exec(`PRAGMA busy_timeout = ${SQLITE_SERVING_BUSY_TIMEOUT_MS}`);
    const db = new Kysely<TestSchema>({ dialect: new NodeSqliteDialect(handle, options) });
    open.push(db);
    await db.schema.createTable('items').ifNotExists().addColumn('id', 'integer', (c) => c.primaryKey()).addColumn('name', 'text').execute();
    return db;
  }

  /** A second connection to the same file, as another process would have, holding the write lock. */
  function lockFromElsewhere(): DatabaseSync {
    const other = new DatabaseSync(file);
    others.push(other);
    other.exec('BEGIN IMMEDIATE');
    return other;
  }

  it('createDatabase lowers SQLite’s own, blocking lock wait once the database is migrated', async () => {
    const db = await createDatabase(join(dir, 'app.sqlite'));
    open.push(db);
    const busy = (await sql<{ timeout: number }>`PRAGMA busy_timeout`.execute(db)).rows[0];
    expect(Object.values(busy!)[0]).toBe(SQLITE_SERVING_BUSY_TIMEOUT_MS);
  });

  it('a write waits for another connection’s lock without blocking the event loop, then succeeds', async () => {
    const db = await openItems({ busyTimeoutMs: 60_000 });
    const other = lockFromElsewhere();
    // Released by a timer: it can only fire if the waiting write leaves the event loop free. A
    // write that waited inside SQLite (blocking) would hold the loop until it gave up.
    setTimeout(() => other.exec('ROLLBACK'), 50);
    await db.insertInto('items').values({ name: 'after the lock' }).execute();
    expect(await db.selectFrom('items').select('name').execute()).toEqual([{ name: 'after the lock' }]);
  });

  it('reads are not queued behind a write that waits for the lock', async () => {
    const db = await openItems({ busyTimeoutMs: 60_000 });
    await db.insertInto('items').values({ name: 'before' }).execute();
    const other = lockFromElsewhere();
    let writeDone = false;
    const write = db
      .insertInto('items')
      .values({ name: 'waiting' })
      .execute()
      .finally(() => (writeDone = true));
    // WAL lets readers through while another connection writes; ours must not wait for our own write.
    expect(await db.selectFrom('items').select('name').execute()).toEqual([{ name: 'before' }]);
    expect(writeDone).toBe(false);
    other.exec('ROLLBACK');
    await write;
    expect(await db.selectFrom('items').select('name').orderBy('id').execute()).toEqual([{ name: 'before' }, { name: 'waiting' }]);
  });

  it('fails with DATABASE_BUSY (503, Retry-After) once busyTimeoutMs has passed', async () => {
    const db = await openItems({ busyTimeoutMs: 50 });
    lockFromElsewhere();
    const error = await db
      .insertInto('items')
      .values({ name: 'never' })
      .execute()
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(DatabaseBusyError);
    expect(error).toMatchObject({ status: 503, code: 'DATABASE_BUSY', headers: { 'Retry-After': '1' }, transient: true });
    expect((error as Error).cause).toMatchObject({ code: 'ERR_SQLITE_ERROR', errcode: 5 });
  });

  it('a transaction waits for the lock at its start (BEGIN IMMEDIATE) and fails DATABASE_BUSY past the busy timeout, leaving nothing open', async () => {
    // The lock is never released here: the wait is exercised to its (short) end.
    const db = await openItems({ busyTimeoutMs: 200 });
    lockFromElsewhere();
    await expect(
      db.transaction().execute(async (trx) => {
        await trx.insertInto('items').values({ name: 'in a transaction' }).execute();
      }),
    ).rejects.toBeInstanceOf(DatabaseBusyError);
    // The connection is usable (and outside any transaction) afterwards.
    expect(await db.selectFrom('items').select('name').execute()).toEqual([]);
  });

  it('a database that cannot grow answers DATABASE_FULL (503, Retry-After)', async () => {
    const db = await openItems();
    // SQLite's own size cap fails exactly like a full disk: SQLITE_FULL, "database or disk is full".
    const pages = Number(Object.values((await sql`PRAGMA page_count`.execute(db)).rows[0] as object)[0]);
    await sql.raw(`PRAGMA max_page_count = ${pages}`).execute(db);
    const error = await db
      .insertInto('items')
      .values(Array.from({ length: 50 }, (_, i) => ({ name: `${i}`.padEnd(1000, 'x') })))
      .execute()
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(DatabaseFullError);
    expect(error).toMatchObject({ status: 503, code: 'DATABASE_FULL', headers: { 'Retry-After': expect.stringMatching(/^\d+$/) } });
  });

  describe('a damaged file', () => {
    async function damagedFile(): Promise<void> {
      const db = await openItems();
      await db
        .insertInto('items')
        .values(Array.from({ length: 2000 }, (_, i) => ({ name: `item ${i} `.padEnd(200, '.') })))
        .execute();
      await sql`PRAGMA wal_checkpoint(TRUNCATE)`.execute(db);
      await db.destroy();
      open.splice(open.indexOf(db), 1);
      corruptPage(file, 20);
    }

    it('a query that reads the damaged page answers DATABASE_CORRUPT and records it', async () => {
      await damagedFile();
      const faults = new DatabaseFaults();
      const db = await openItems({ faults });
      expect(faults.corruption).toBeNull();
      const error = await db
        .selectFrom('items')
        .selectAll()
        .execute()
        .catch((e: unknown) => e);
      expect(error).toBeInstanceOf(DatabaseCorruptError);
      expect(error).toMatchObject({ status: 503, code: 'DATABASE_CORRUPT', transient: false });
      expect((error as AppError).message).not.toContain(dir);
      expect(faults.corruption).toMatchObject({ since: expect.any(Date), detail: expect.stringMatching(/malformed/) });
    });

    it('createDatabase finds it with quick_check at start, records it and still opens', async () => {
      await damagedFile();
      const faults = new DatabaseFaults();
      const db = await createDatabase(file, { faults });
      open.push(db);
      // Reported by quick_check, or thrown by the first statement that reads the damaged page.
      expect(faults.corruption).toMatchObject({ detail: expect.stringMatching(/quick_check|malformed/) });
      expect(await sql`select 1 as one`.execute(db)).toMatchObject({ rows: [{ one: 1 }] });
    });

    it('createDatabase records nothing for a sound file', async () => {
      const faults = new DatabaseFaults();
      open.push(await createDatabase(join(dir, 'sound.sqlite'), { faults }));
      expect(faults.corruption).toBeNull();
    });
  });
});

/** Overwrites page `page` (1-based) of a SQLite file with garbage, as a failing disk might. */
export function corruptPage(filename: string, page: number, pageSize = 4096): void {
  const fd = openSync(filename, 'r+');
  try {
    const garbage = Buffer.alloc(pageSize);
    for (let i = 0; i < pageSize; i++) garbage[i] = (i * 151 + 7) & 0xff;
    writeSync(fd, garbage, 0, pageSize, (page - 1) * pageSize);
  } finally {
    closeSync(fd);
  }
}
