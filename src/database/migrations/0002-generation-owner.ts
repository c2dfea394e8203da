import { Kysely } from 'kysely';
import type { Migration } from 'kysely/migration';

/**
 * Every generation belongs to the API key (by name) that created it. Rows from before keys existed
 * keep `owner` null: they belong to no key and are visible only while API keys are off.
 *
 * Idempotent, like 0001: the column is added only when missing, the index `if not exists`, so a start
 * that died half-way re-runs it safely.
 */
export const addGenerationOwner: Migration = {
  async up(db: Kysely<any>): Promise<void> {
    const tables = await db.introspection.getTables();
    const generations = tables.find((t) => t.name === 'generations');
    if (!generations?.columns.some((c) => c.name === 'owner')) {
      await db.schema.alterTable('generations').addColumn('owner', 'text').execute();
    }
    // History pages of one owner walk this index: owner first, then the page order.
    await db.schema
      .createIndex('generations_owner_created_at_id_idx')
      .ifNotExists()
      .on('generations')
      .columns(['owner', 'created_at desc', 'id desc'])
      .execute();
  },

  async down(db: Kysely<any>): Promise<void> {
    await db.schema.dropIndex('generations_owner_created_at_id_idx').ifExists().execute();
    await db.schema.alterTable('generations').dropColumn('owner').execute();
  },
};
