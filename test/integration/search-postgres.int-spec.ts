import { CompiledQuery, Kysely, LogEvent, PostgresDialect, sql } from 'kysely';
import { Pool } from 'pg';
import { createDatabase } from '../../src/database/database';
import type { DatabaseSchema } from '../../src/database/database.schema';
import { GenerationsRepository } from '../../src/database/generations.repository';
import { SearchRepository } from '../../src/database/search.repository';
import { describeReferencesAndSearch, palette, succeededWith } from '../../src/database/search.repository.cases';
import { rgbToOklab } from '../../src/search/color-space';
import { parseTextQuery } from '../../src/search/text-query';
import { createTestDatabase, TestDatabase, withClient } from '../support/postgres';

/**
 * The reference library's and search index's shared cases (src/database/search.repository.cases.ts,
 * also run on SQLite by the unit spec) against a real PostgreSQL server, each on a database of its
 * own; then the plans: text through the GIN index, nearest colours through the GiST index.
 */
let testDb: TestDatabase;

beforeAll(async () => {
  testDb = await createTestDatabase();
});

afterAll(async () => {
  await testDb?.drop();
});

async function emptied(): Promise<Kysely<DatabaseSchema>> {
  const db = await createDatabase({ dialect: 'postgres', url: testDb.url });
  await sql`truncate generations, reference_images, search_items, search_item_palettes, search_palettes, search_colors, storage_sweep cascade`.execute(db);
  return db;
}

describeReferencesAndSearch('PostgreSQL', {
  open: emptied,
  async openUnmigrated() {
    // A database of its own: the schema of the shared one is already migrated.
    const own = await createTestDatabase();
    const db = new Kysely<DatabaseSchema>({ dialect: new PostgresDialect({ pool: new Pool({ connectionString: own.url, max: 2 }) }) });
    const destroy = db.destroy.bind(db);
    db.destroy = async () => {
      await destroy();
      await own.drop();
    };
    return db;
  },
});

describe('Search on PostgreSQL: extension and plans', () => {
  it('created the cube extension', async () => {
    await (await emptied()).destroy();
    const { rows } = await withClient(testDb.url, (c) => c.query("select extname from pg_extension where extname = 'cube'"));
    expect(rows).toEqual([{ extname: 'cube' }]);
  });

  it('can answer text through the GIN index and nearest colours through the GiST index', async () => {
    const db = await emptied();
    try {
      const repo = new GenerationsRepository(db);
      // 'heron' is rare (2 %), as a searched word usually is: the planner then prefers the index.
      const words = ['fox', 'owl', 'whale', 'lynx', 'otter', 'badger'];
      const hexes = ['#d43434', '#2a4d9b', '#2e8b3c', '#f2d024', '#7b3fa0', '#e07b39'];
      const rows = Array.from({ length: 4000 }, (_, i) =>
        succeededWith(`a ${i % 50 === 1 ? 'heron' : words[i % words.length]} number ${i}`, [palette([hexes[i % hexes.length], 0.7], [hexes[(i + 1) % hexes.length], 0.3])], { owner: `key-${i % 4}` }),
      );
      // A few at a time, as many as the pool has connections: a deeper queue would wait past the pool's
      // connect timeout on a busy machine (that timeout is not what this test is about).
      for (let i = 0; i < rows.length; i += 10) await Promise.all(rows.slice(i, i + 10).map((g) => repo.create(g)));
      await sql`analyze search_items`.execute(db);
      await sql`analyze search_colors`.execute(db);

      const queries: CompiledQuery[] = [];
      const logged = new Kysely<DatabaseSchema>({
        dialect: new PostgresDialect({ pool: new Pool({ connectionString: testDb.url, max: 1 }) }),
        log: (event: LogEvent) => {
          if (event.level === 'query') queries.push(event.query);
        },
      });
      try {
        // At this size a sequential scan costs the planner less; what is proven here is that the
        // indexes fit the queries (the bench shows the plans at 110 000 items).
        await sql`set enable_seqscan = off`.execute(logged);
        queries.length = 0;
        const index = new SearchRepository(logged);
        expect((await index.text(parseTextQuery('heron'), { owner: 'key-1', kinds: ['generation'], limit: 10 })).length).toBe(10);
        expect((await index.nearestPalettes(rgbToOklab([212, 52, 52]), 0.7, { owner: 'key-1', kinds: ['generation', 'reference'], k: 20 })).length).toBeGreaterThan(0);
        expect(queries).toHaveLength(2);
        const plans: string[] = [];
        for (const q of [...queries]) {
          const { rows: plan } = await logged.executeQuery<{ 'QUERY PLAN': unknown }>(CompiledQuery.raw(`explain (format json) ${q.sql}`, [...q.parameters]));
          plans.push(JSON.stringify(plan[0]['QUERY PLAN']));
        }
        expect(plans[0]).toContain('"Index Name":"search_items_tsv_idx"');
        expect(plans[1]).toContain('"Index Name":"search_colors_point_idx"');
      } finally {
        await logged.destroy();
      }
    } finally {
      await db.destroy();
    }
  });
});
