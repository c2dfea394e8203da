import { mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { Kysely } from 'kysely';
import { Migrator } from 'kysely/migration';
import type { MigrationResult } from 'kysely/migration';
import type { DatabaseSchema } from './database.schema';
import { migrationProvider } from './migrations';
import { NodeSqliteDialect, openSqlite } from './node-sqlite.dialect';

/** Injection token of the `Kysely<DatabaseSchema>` instance. */
export const KYSELY = Symbol('KYSELY');

export type Database = Kysely<DatabaseSchema>;

export const DATABASE_FILE_NAME = 'hybrid-image-search.sqlite';

/** Where the SQLite file lives for a given `DATA_DIR`. */
export function databaseFile(dataDir: string): string {
  return join(dataDir, DATABASE_FILE_NAME);
}

/**
 * Opens the SQLite database at `filename` (`:memory:` for tests), creating its folder and file if
 * needed, and migrates it to the latest schema. Close it with `db.destroy()`.
 */
export async function createDatabase(filename: string): Promise<Database> {
  if (filename !== ':memory:') mkdirSync(dirname(filename), { recursive: true });
  const db = new Kysely<DatabaseSchema>({ dialect: new NodeSqliteDialect(openSqlite(filename)) });
  try {
    await migrateToLatest(db);
  } catch (error) {
    await db.destroy();
    throw error;
  }
  return db;
}

/** Applies every pending migration; a no-op when the schema is current. Returns what ran. */
export async function migrateToLatest(db: Kysely<any>): Promise<MigrationResult[]> {
  const { error, results = [] } = await new Migrator({ db, provider: migrationProvider }).migrateToLatest();
  if (error) {
    const failed = results.find((r) => r.status === 'Error')?.migrationName;
    throw new Error(`Database migration ${failed ?? ''} failed: ${(error as Error)?.message ?? String(error)}`, {
      cause: error,
    });
  }
  return results;
}
