import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { setTimeout as sleep } from 'node:timers/promises';
import { Kysely, sql } from 'kysely';
import { DatabaseBusyError } from './database.errors';
import { NodeSqliteDialect, openSqlite } from './node-sqlite.dialect';

/**
 * Write transactions (the repositories write a record and its search entry in one) take SQLite's
 * write lock at BEGIN, through the same asynchronous lock wait as single statements: another
 * process holding the lock makes them wait (up to the busy timeout), not fail at their first write.
 */
describe('SQLite write transactions and another process holding the lock', () => {
  let dir: string;
  let file: string;
  let other: DatabaseSync;

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'his-sqlite-tx-'));
    file = join(dir, 'db.sqlite');
    const setup = openSqlite(file);
    setup.exec('create table t (v integer)');
    setup.close();
    other = new DatabaseSync(file);
  });

  afterEach(() => {
    if (other.isOpen) other.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const open = (busyTimeoutMs: number) => {
    const handle = openSqlite(file);
    handle.exec('PRAGMA busy_timeout = 0');
    return new Kysely<{ t: { v: number } }>({ dialect: new NodeSqliteDialect(handle, { busyTimeoutMs }) });
  };

  it('waits for the lock at BEGIN, then commits', async () => {
    const db = open(60_000);
    try {
      other.exec('begin immediate');
      let done = false;
      const tx = db
        .transaction()
        .execute(async (trx) => {
          await trx.insertInto('t').values({ v: 1 }).execute();
          await trx.insertInto('t').values({ v: 2 }).execute();
        })
        .then(() => (done = true));
      // The lock is held throughout: the transaction cannot have got anywhere.
      await sleep(100);
      expect(done).toBe(false);
      // Reads go on meanwhile (WAL).
      expect(await db.selectFrom('t').selectAll().execute()).toEqual([]);
      other.exec('commit');
      await tx;
      expect((await sql<{ n: number }>`select count(*) as n from t`.execute(db)).rows[0].n).toBe(2);
    } finally {
      await db.destroy();
    }
  });

  it('gives up with DatabaseBusyError after the busy timeout, having written nothing', async () => {
    const db = open(50);
    try {
      other.exec('begin immediate');
      await expect(db.transaction().execute((trx) => trx.insertInto('t').values({ v: 1 }).execute())).rejects.toBeInstanceOf(DatabaseBusyError);
      other.exec('commit');
      expect(await db.selectFrom('t').selectAll().execute()).toEqual([]);
    } finally {
      await db.destroy();
    }
  });
});
