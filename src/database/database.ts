import { mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { Kysely, PostgresDialect } from 'kysely';
import { Migrator } from 'kysely/migration';
import type { MigrationResult } from 'kysely/migration';
import type { AppConfig } from '../config/app-config';
import type { DatabaseSchema } from './database.schema';
import { migrationProvider } from './migrations';
import { NodeSqliteDialect, openSqlite } from './node-sqlite.dialect';
import { createPostgresPool, PostgresOptions } from './postgres';

/** Injection token of the `Kysely<DatabaseSchema>` instance. */
export const KYSELY = Symbol('KYSELY');

export type Database = Kysely<DatabaseSchema>;

export const DATABASE_FILE_NAME = 'hybrid-image-search.sqlite';

/** Where the SQLite file lives for a given `DATA_DIR`. */
export function databaseFile(dataDir: string): string {
  return join(dataDir, DATABASE_FILE_NAME);
}

/** Which database to open: a SQLite file (`:memory:` for tests) or a PostgreSQL server. */
export type DatabaseTarget = { dialect: 'sqlite'; filename: string } | ({ dialect: 'postgres' } & PostgresOptions);

/** PostgreSQL when `DATABASE_URL` is set, else the SQLite file under `DATA_DIR`. */
export function databaseTarget(config: Pick<AppConfig, 'dataDir' | 'database' | 'telemetry'>): DatabaseTarget {
  const { url, poolSize, connectTimeoutMs, statementTimeoutMs } = config.database;
  if (url === undefined) return { dialect: 'sqlite', filename: databaseFile(config.dataDir) };
  return { dialect: 'postgres', url, poolSize, connectTimeoutMs, statementTimeoutMs, applicationName: config.telemetry.serviceName };
}

/**
 * Opens the database and migrates it to the latest schema; close it with `db.destroy()`.
 * A string is a SQLite file name (`:memory:` for tests): its folder and file are created if
 * needed. On PostgreSQL the migrations run first, on a connection of their own without the
 * statement timeout (Kysely's migrator holds an advisory lock there, so instances that start
 * together wait for each other and each migration runs once), then the pool is opened.
 */
export async function createDatabase(target: string | DatabaseTarget): Promise<Database> {
  const t: DatabaseTarget = typeof target === 'string' ? { dialect: 'sqlite', filename: target } : target;
  if (t.dialect === 'postgres') return createPostgresDatabase(t);
  if (t.filename !== ':memory:') mkdirSync(dirname(t.filename), { recursive: true });
  const db = new Kysely<DatabaseSchema>({ dialect: new NodeSqliteDialect(openSqlite(t.filename)) });
  try {
    await migrateToLatest(db);
  } catch (error) {
    await db.destroy();
    throw error;
  }
  return db;
}

async function createPostgresDatabase(options: PostgresOptions): Promise<Database> {
  const migrations = new Kysely<DatabaseSchema>({
    dialect: new PostgresDialect({ pool: createPostgresPool({ ...options, statementTimeoutMs: 0 }, { max: 1 }) }),
  });
  try {
    await migrateToLatest(migrations);
  } finally {
    await migrations.destroy();
  }
  return new Kysely<DatabaseSchema>({ dialect: new PostgresDialect({ pool: createPostgresPool(options) }) });
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
