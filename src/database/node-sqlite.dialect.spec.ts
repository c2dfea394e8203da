import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Generated, Kysely, sql } from 'kysely';
import { NodeSqliteDialect, openSqlite } from './node-sqlite.dialect';

interface TestSchema {
  items: { id: Generated<number>; name: string; weight: number | null };
}

async function openItems(filename = ':memory:', statementCacheSize?: number): Promise<Kysely<TestSchema>> {
  const db = new Kysely<TestSchema>({ dialect: new NodeSqliteDialect(openSqlite(filename), { statementCacheSize }) });
  await db.schema
    .createTable('items')
    .ifNotExists()
    .addColumn('id', 'integer', (c) => c.primaryKey().autoIncrement())
    .addColumn('name', 'text', (c) => c.notNull().unique())
    .addColumn('weight', 'real')
    .execute();
  return db;
}

describe('NodeSqliteDialect', () => {
  let db: Kysely<TestSchema>;

  beforeEach(async () => {
    db = await openItems();
  });

  afterEach(async () => {
    await db.destroy();
  });

  it('runs writes with affected rows and insert ids, reads with rows', async () => {
    const insert = await db.insertInto('items').values({ name: 'a', weight: 1.5 }).executeTakeFirstOrThrow();
    expect(insert.insertId).toBe(1n);
    expect(insert.numInsertedOrUpdatedRows).toBe(1n);
    await db.insertInto('items').values([{ name: 'b', weight: null }, { name: 'c', weight: 3 }]).execute();

    const update = await db.updateTable('items').set({ weight: 0 }).where('weight', 'is not', null).executeTakeFirst();
    expect(update.numUpdatedRows).toBe(2n);
    expect(await db.selectFrom('items').select(['name', 'weight']).orderBy('name').execute()).toEqual([
      { name: 'a', weight: 0 },
      { name: 'b', weight: null },
      { name: 'c', weight: 0 },
    ]);
  });

  it('returns rows from writes with RETURNING', async () => {
    const rows = await db.insertInto('items').values({ name: 'x', weight: 2 }).returning(['id', 'name']).execute();
    expect(rows).toEqual([{ id: 1, name: 'x' }]);
    const deleted = await db.deleteFrom('items').where('name', '=', 'x').returningAll().execute();
    expect(deleted).toEqual([{ id: 1, name: 'x', weight: 2 }]);
  });

  it('streams select results', async () => {
    await db.insertInto('items').values(['p', 'q', 'r'].map((name) => ({ name, weight: null }))).execute();
    const names: string[] = [];
    for await (const row of db.selectFrom('items').select('name').orderBy('name', 'desc').stream()) names.push(row.name);
    expect(names).toEqual(['r', 'q', 'p']);
  });

  it('commits a transaction, and rolls it back entirely when its callback throws', async () => {
    await db.transaction().execute(async (trx) => {
      await trx.insertInto('items').values({ name: 'kept', weight: null }).execute();
    });
    await expect(
      db.transaction().execute(async (trx) => {
        await trx.insertInto('items').values({ name: 'lost-1', weight: null }).execute();
        await trx.insertInto('items').values({ name: 'lost-2', weight: null }).execute();
        throw new Error('abort');
      }),
    ).rejects.toThrow('abort');
    expect(await db.selectFrom('items').select('name').execute()).toEqual([{ name: 'kept' }]);
  });

  it('rolls back a transaction whose statement fails half-way', async () => {
    await db.insertInto('items').values({ name: 'dup', weight: null }).execute();
    await expect(
      db.transaction().execute(async (trx) => {
        await trx.insertInto('items').values({ name: 'first', weight: null }).execute();
        await trx.insertInto('items').values({ name: 'dup', weight: null }).execute();
      }),
    ).rejects.toThrow(/UNIQUE/);
    expect(await db.selectFrom('items').select('name').execute()).toEqual([{ name: 'dup' }]);
  });

  it('keeps queries from elsewhere out of an open transaction (one connection, mutex)', async () => {
    let inserted!: () => void;
    const insertedP = new Promise<void>((r) => (inserted = r));
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));

    const trx = db.transaction().execute(async (t) => {
      await t.insertInto('items').values({ name: 'uncommitted', weight: null }).execute();
      inserted();
      await gate;
      throw new Error('rollback');
    });
    await insertedP;
    // Issued while the transaction is open: on a shared connection without the mutex it would run
    // inside the transaction and see (and later lose) the uncommitted row.
    const outsideRead = db.selectFrom('items').select('name').execute();
    const outsideWrite = db.insertInto('items').values({ name: 'outside', weight: null }).execute();
    // Give them every chance to run before the transaction ends.
    await new Promise((r) => setTimeout(r, 20));
    release();

    await expect(trx).rejects.toThrow('rollback');
    expect(await outsideRead).toEqual([]);
    await outsideWrite;
    expect(await db.selectFrom('items').select('name').execute()).toEqual([{ name: 'outside' }]);
  });

  it('runs two concurrent transactions one after the other', async () => {
    const order: string[] = [];
    const run = (tag: string) =>
      db.transaction().execute(async (t) => {
        order.push(`${tag}:begin`);
        await t.insertInto('items').values({ name: `${tag}1`, weight: null }).execute();
        await new Promise((r) => setImmediate(r));
        await t.insertInto('items').values({ name: `${tag}2`, weight: null }).execute();
        order.push(`${tag}:end`);
      });
    await Promise.all([run('a'), run('b')]);
    expect(order).toEqual(['a:begin', 'a:end', 'b:begin', 'b:end']);
    expect(await db.selectFrom('items').select(({ fn }) => fn.countAll<number>().as('n')).executeTakeFirst()).toEqual({ n: 4 });
  });

  it('reuses prepared statements correctly, with eviction and without a cache', async () => {
    for (const size of [0, 1]) {
      const other = await openItems(':memory:', size);
      try {
        for (let i = 0; i < 20; i++) {
          await other.insertInto('items').values({ name: `n${i}`, weight: i }).execute();
          const row = await other.selectFrom('items').select('weight').where('name', '=', `n${i}`).executeTakeFirst();
          expect(row).toEqual({ weight: i });
        }
        const total = await other
          .selectFrom('items')
          .select(({ fn }) => fn.sum<number>('weight').as('sum'))
          .executeTakeFirst();
        expect(total).toEqual({ sum: 190 });
      } finally {
        await other.destroy();
      }
    }
  });

  it('applies the pragmas to a file database', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'his-dialect-'));
    const file = await openItems(join(dir, 'p.sqlite'));
    try {
      const pragma = async (name: string) =>
        Object.values((await sql.raw<Record<string, unknown>>(`PRAGMA ${name}`).execute(file)).rows[0]!)[0];
      expect(await pragma('journal_mode')).toBe('wal');
      expect(await pragma('synchronous')).toBe(1); // NORMAL
      expect(await pragma('busy_timeout')).toBe(5000);
      expect(await pragma('foreign_keys')).toBe(1);
    } finally {
      await file.destroy();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('closes the database on destroy', async () => {
    await db.destroy();
    await expect(db.selectFrom('items').selectAll().execute()).rejects.toThrow();
  });
});
