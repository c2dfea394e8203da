import { Kysely, sql } from 'kysely';
import type { Migration } from 'kysely/migration';

/**
 * A generation remembers the references it was asked to use (their ids, in order) and whether their
 * palettes were put in the prompt, so any worker can load them and a client sees what it asked for.
 * Idempotent like the others: each column only when missing.
 */
export const addGenerationReferences: Migration = {
  async up(db: Kysely<any>): Promise<void> {
    const tables = await db.introspection.getTables();
    const columns = new Set(tables.find((t) => t.name === 'generations')?.columns.map((c) => c.name));
    if (!columns.has('reference_ids')) {
      await db.schema.alterTable('generations').addColumn('reference_ids', 'text', (c) => c.notNull().defaultTo(sql`'[]'`)).execute();
    }
    if (!columns.has('palette_hint')) {
      await db.schema.alterTable('generations').addColumn('palette_hint', 'integer', (c) => c.notNull().defaultTo(0)).execute();
    }
  },

  async down(db: Kysely<any>): Promise<void> {
    await db.schema.alterTable('generations').dropColumn('palette_hint').execute();
    await db.schema.alterTable('generations').dropColumn('reference_ids').execute();
  },
};
