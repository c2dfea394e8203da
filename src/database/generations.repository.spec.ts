import { CompiledQuery, Kysely, LogEvent } from 'kysely';
import { createDatabase, migrateToLatest } from './database';
import type { DatabaseSchema } from './database.schema';
import { describeGenerationsRepository, generation, T0 } from './generations.repository.cases';
import { GenerationsRepository } from './generations.repository';
import { NodeSqliteDialect, openSqlite } from './node-sqlite.dialect';

// The shared cases, on a fresh in-memory database per test. The same list runs against
// PostgreSQL in test/integration/generations-repository-postgres.int-spec.ts.
describeGenerationsRepository('SQLite', { open: () => createDatabase(':memory:') });

describe('GenerationsRepository query plans (SQLite)', () => {
  it('serves each owner\'s history pages from the (owner, created_at, id) index without sorting', async () => {
    const sqlite = openSqlite(':memory:');
    const queries: CompiledQuery[] = [];
    const db = new Kysely<DatabaseSchema>({
      dialect: new NodeSqliteDialect(sqlite),
      log: (event: LogEvent) => {
        if (event.level === 'query') queries.push(event.query);
      },
    });
    try {
      await migrateToLatest(db);
      const repo = new GenerationsRepository(db);
      for (let i = 0; i < 60; i++) await repo.create(generation({ owner: ['a', 'b', null][i % 3], createdAt: new Date(T0 + i) }));
      sqlite.exec('ANALYZE');
      for (const owner of ['a', null]) {
        const first = await repo.list({ owner, limit: 10 });
        await repo.list({ owner, limit: 10, cursor: first.nextCursor! });
      }
      for (const q of queries.slice(-4)) {
        const plan = sqlite
          .prepare(`EXPLAIN QUERY PLAN ${q.sql}`)
          .all(...(q.parameters as (string | number)[]))
          .map((r) => String(r.detail))
          .join('\n');
        expect(plan).toContain('generations_owner_created_at_id_idx');
        expect(plan).not.toMatch(/TEMP B-TREE/);
      }
    } finally {
      await db.destroy();
    }
  });
});
