import { CompiledQuery, Kysely, LogEvent, PostgresDialect, sql } from 'kysely';
import { Pool } from 'pg';
import { createDatabase, Database } from '../../src/database/database';
import type { DatabaseSchema } from '../../src/database/database.schema';
import { describeGenerationsRepository, generation, succeeded, T0 } from '../../src/database/generations.repository.cases';
import { GenerationsRepository } from '../../src/database/generations.repository';
import { createTestDatabase, TestDatabase } from '../support/postgres';

/**
 * The repository's shared cases (src/database/generations.repository.cases.ts, also run on SQLite
 * by the unit spec) against a real PostgreSQL server, in a database of this file's own.
 */
let testDb: TestDatabase;
const open = (url = testDb.url) => createDatabase({ dialect: 'postgres', url });

beforeAll(async () => {
  testDb = await createTestDatabase();
});

afterAll(async () => {
  await testDb?.drop();
});

describeGenerationsRepository('PostgreSQL', {
  async open() {
    const db = await open();
    await db.deleteFrom('generations').execute();
    return db;
  },
});

describe('GenerationsRepository on PostgreSQL: types and plans', () => {
  let db: Database;

  beforeEach(async () => {
    db = await open();
    await db.deleteFrom('generations').execute();
  });

  afterEach(async () => {
    await db.destroy();
  });

  it('stores times as bigint and reads them back as numbers', async () => {
    const g = succeeded({ owner: 'alice' });
    await new GenerationsRepository(db).create(g);
    const row = await db.selectFrom('generations').select(['created_at', 'started_at', 'completed_at', 'count']).executeTakeFirstOrThrow();
    expect(row).toEqual({ created_at: T0, started_at: T0 + 15, completed_at: T0 + 4321, count: 2 });
    const { rows } = await sql<{ type: string }>`select pg_typeof(created_at)::text as type from generations`.execute(db);
    expect(rows).toEqual([{ type: 'bigint' }]);
  });

  it('maps rows the same through a pool with node-postgres defaults (bigint as text)', async () => {
    const g = succeeded({ owner: 'alice' });
    await new GenerationsRepository(db).create(g);
    const plain = new Kysely<DatabaseSchema>({ dialect: new PostgresDialect({ pool: new Pool({ connectionString: testDb.url, max: 1 }) }) });
    try {
      const raw = await plain.selectFrom('generations').select('created_at').executeTakeFirstOrThrow();
      expect(raw.created_at).toBe(String(T0));
      expect(await new GenerationsRepository(plain).findById(g.id, 'alice')).toEqual(g);
    } finally {
      await plain.destroy();
    }
  });

  // PostgreSQL takes the ORDER BY from an index only after `=` on its leading columns: for
  // `owner IS NULL` (API keys off, where every row has no owner) it walks the (created_at, id) index
  // instead, which is as good there. Either way: an index scan, never a sort or a full scan.
  it("serves a key's history pages from the (owner, created_at, id) index, and no key's from an index, without sorting", async () => {
    // Enough rows, spread over many owners (and rows from before keys), that the planner picks an
    // index for a page of 11 on its own, as it would on a real table.
    const owners = [...Array.from({ length: 30 }, (_, i) => `key-${i}`), null];
    const rows = Array.from({ length: 3100 }, (_, i) => generation({ owner: owners[i % owners.length], createdAt: new Date(T0 + i) }));
    const repo = new GenerationsRepository(db);
    for (let i = 0; i < rows.length; i += 500) {
      await Promise.all(rows.slice(i, i + 500).map((g) => repo.create(g)));
    }
    await sql`analyze generations`.execute(db);

    const queries: CompiledQuery[] = [];
    const logged = new Kysely<DatabaseSchema>({
      dialect: new PostgresDialect({ pool: new Pool({ connectionString: testDb.url, max: 1 }) }),
      log: (event: LogEvent) => {
        if (event.level === 'query') queries.push(event.query);
      },
    });
    try {
      const loggedRepo = new GenerationsRepository(logged);
      for (const owner of ['key-7', null]) {
        const first = await loggedRepo.list({ owner, limit: 10 });
        await loggedRepo.list({ owner, limit: 10, cursor: first.nextCursor! });
      }
      expect(queries).toHaveLength(4);
      for (const [i, q] of [...queries].entries()) {
        const { rows: plan } = await logged.executeQuery<{ 'QUERY PLAN': unknown }>(
          CompiledQuery.raw(`explain (format json) ${q.sql}`, [...q.parameters]),
        );
        const text = JSON.stringify(plan[0]['QUERY PLAN']);
        const index = i < 2 ? 'generations_owner_created_at_id_idx' : 'generations_created_at_id_idx';
        expect(text).toContain(`"Index Name":"${index}"`);
        expect(text).not.toContain('"Node Type":"Sort"');
        expect(text).not.toContain('"Node Type":"Seq Scan"');
      }
    } finally {
      await logged.destroy();
    }
  });
});
