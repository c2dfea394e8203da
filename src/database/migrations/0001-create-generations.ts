import { Kysely, sql } from 'kysely';
import type { Migration } from 'kysely/migration';

/**
 * Kysely runs SQLite migrations outside a transaction, so every step is `if not exists`: a start
 * that died half-way through simply re-runs this migration.
 */
export const createGenerations: Migration = {
  async up(db: Kysely<any>): Promise<void> {
    await db.schema
      .createTable('generations')
      .ifNotExists()
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('status', 'text', (c) => c.notNull())
      .addColumn('stage', 'text', (c) => c.notNull())
      .addColumn('prompt', 'text', (c) => c.notNull())
      .addColumn('model', 'text', (c) => c.notNull())
      .addColumn('aspect_ratio', 'text', (c) => c.notNull())
      .addColumn('count', 'integer', (c) => c.notNull())
      .addColumn('palette_size', 'integer', (c) => c.notNull())
      .addColumn('created_at', 'bigint', (c) => c.notNull())
      .addColumn('started_at', 'bigint')
      .addColumn('completed_at', 'bigint')
      .addColumn('timings', 'text', (c) => c.notNull().defaultTo(sql`'{}'`))
      .addColumn('images', 'text', (c) => c.notNull().defaultTo(sql`'[]'`))
      .addColumn('input_tokens', 'integer', (c) => c.notNull().defaultTo(0))
      .addColumn('output_tokens', 'integer', (c) => c.notNull().defaultTo(0))
      .addColumn('error_code', 'text')
      .addColumn('error_message', 'text')
      .addColumn('updated_at', 'bigint', (c) => c.notNull())
      .execute();
    // History pages walk this index backwards from the cursor: no sort, no scan of older pages.
    await db.schema
      .createIndex('generations_created_at_id_idx')
      .ifNotExists()
      .on('generations')
      .columns(['created_at desc', 'id desc'])
      .execute();
    // Start-up recovery and status counts touch only unfinished rows.
    await db.schema.createIndex('generations_status_idx').ifNotExists().on('generations').column('status').execute();
  },

  async down(db: Kysely<any>): Promise<void> {
    await db.schema.dropTable('generations').ifExists().execute();
  },
};
