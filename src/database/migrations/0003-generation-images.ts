import { Kysely, sql } from 'kysely';
import type { Migration } from 'kysely/migration';

/**
 * One row per finished image of a generation, written by whichever worker ran that image's job, so
 * the images of one generation can run on different instances; the generation's final state is
 * computed from its rows once all are in. And `client` on generations: who asked (an API key's name,
 * or a digest of the address), so each client's active generations can be counted on any instance.
 *
 * Idempotent like the others: the column only when missing, table and indexes `if not exists`.
 */
export const addGenerationImages: Migration = {
  async up(db: Kysely<any>): Promise<void> {
    const tables = await db.introspection.getTables();
    const generations = tables.find((t) => t.name === 'generations');
    if (!generations?.columns.some((c) => c.name === 'client')) {
      await db.schema.alterTable('generations').addColumn('client', 'text').execute();
    }
    // Admission counts a client's queued and running generations: only those rows are indexed.
    await db.schema
      .createIndex('generations_active_client_idx')
      .ifNotExists()
      .on('generations')
      .column('client')
      .where(sql.ref('status'), 'in', ['queued', 'running'])
      .execute();
    await db.schema
      .createTable('generation_images')
      .ifNotExists()
      .addColumn('generation_id', 'text', (c) => c.notNull().references('generations.id').onDelete('cascade'))
      .addColumn('idx', 'integer', (c) => c.notNull())
      .addColumn('status', 'text', (c) => c.notNull())
      .addColumn('storage_key', 'text')
      .addColumn('mime_type', 'text')
      .addColumn('width', 'integer')
      .addColumn('height', 'integer')
      .addColumn('bytes', 'integer')
      .addColumn('palette', 'text')
      .addColumn('error_code', 'text')
      .addColumn('error_message', 'text')
      .addColumn('gemini_ms', 'integer', (c) => c.notNull().defaultTo(0))
      .addColumn('upload_ms', 'integer', (c) => c.notNull().defaultTo(0))
      .addColumn('palette_ms', 'integer', (c) => c.notNull().defaultTo(0))
      .addColumn('input_tokens', 'integer', (c) => c.notNull().defaultTo(0))
      .addColumn('output_tokens', 'integer', (c) => c.notNull().defaultTo(0))
      .addColumn('created_at', 'bigint', (c) => c.notNull())
      .addPrimaryKeyConstraint('generation_images_pk', ['generation_id', 'idx'])
      .execute();
  },

  async down(db: Kysely<any>): Promise<void> {
    await db.schema.dropTable('generation_images').ifExists().execute();
    await db.schema.dropIndex('generations_active_client_idx').ifExists().execute();
    await db.schema.alterTable('generations').dropColumn('client').execute();
  },
};
