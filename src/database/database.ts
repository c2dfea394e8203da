import { mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { Logger } from '@nestjs/common';
import { Kysely, PostgresDialect, sql } from 'kysely';
import { Migrator } from 'kysely/migration';
import type { MigrationResult } from 'kysely/migration';
import type { AppConfig } from '../config/app-config';
import type { DatabaseSchema } from './database.schema';
import { DatabaseFaults } from './database-faults';
import { migrationProvider } from './migrations';
import { NodeSqliteDialect, openSqlite, SQLITE_SERVING_BUSY_TIMEOUT_MS } from './node-sqlite.dialect';
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

export interface DatabaseOptions {
  /** See `NodeSqliteOptions.busyTimeoutMs` (DATABASE_BUSY_TIMEOUT_MS). SQLite only. */
  busyTimeoutMs?: number;
  /** Records a damaged SQLite file (found by the start-up check or at run time) for readiness. */
  faults?: DatabaseFaults;
}

/**
 * Opens the database and migrates it to the latest schema; close it with `db.destroy()`.
 *
 * A string is a SQLite file name (`:memory:` for tests): its folder and file are created if needed,
 * a file database is checked with `PRAGMA quick_check` (≈ 1.3 ms per 1000 generations here; a damaged
 * file is logged and recorded in `faults`, so the service starts but is not ready), then SQLite's own,
 * blocking lock wait is lowered to SQLITE_SERVING_BUSY_TIMEOUT_MS.
 *
 * On PostgreSQL the migrations run first, on a connection of their own without the statement timeout
 * (Kysely's migrator holds an advisory lock there, so instances that start together wait for each
 * other and each migration runs once), then the pool is opened.
 */
export async function createDatabase(target: string | DatabaseTarget, options: DatabaseOptions = {}): Promise<Database> {
  const t: DatabaseTarget = typeof target === 'string' ? { dialect: 'sqlite', filename: target } : target;
  if (t.dialect === 'postgres') return createPostgresDatabase(t);
  const { filename } = t;
  if (filename !== ':memory:') mkdirSync(dirname(filename), { recursive: true });
  const faults = options.faults ?? new DatabaseFaults();
  const handle = openSqlite(filename);
  const db = new Kysely<DatabaseSchema>({ dialect: new NodeSqliteDialect(handle, { busyTimeoutMs: options.busyTimeoutMs, faults }) });
  try {
    await migrateToLatest(db);
    if (filename !== ':memory:') await quickCheck(db, faults);
    handle.exec(`PRAGMA busy_timeout = ${SQLITE_SERVING_BUSY_TIMEOUT_MS}`);
  } catch (error) {
    await db.destroy();
    throw error;
  }
  return db;
}

async function createPostgresDatabase(options: PostgresOptions): Promise<Database> {
  const migrations = new Kysely<DatabaseSchema>({
    dialect: new PostgresDialect({ pool: createPostgresPool({ ...options, statementTimeoutMs: 0 }, { max: 1 }, { translateErrors: false }) }),
  });
  try {
    await migrateToLatest(migrations);
  } finally {
    await migrations.destroy();
  }
  return new Kysely<DatabaseSchema>({ dialect: new PostgresDialect({ pool: createPostgresPool(options) }) });
}

/** Reads every page once (no index-to-table cross-checks: that is `integrity_check`, far slower). */
async function quickCheck(db: Database, faults: DatabaseFaults): Promise<void> {
  const started = performance.now();
  let problems: string[];
  try {
    const rows = (await sql<Record<string, string>>`PRAGMA quick_check(5)`.execute(db)).rows;
    problems = rows.map((r) => Object.values(r)[0]).filter((p) => p !== 'ok');
  } catch (error) {
    // A page too damaged for quick_check to walk: DatabaseCorruptError, already recorded.
    if (faults.corruption) return;
    throw error;
  }
  const ms = Math.round(performance.now() - started);
  if (problems.length > 0) faults.markCorrupt(`quick_check: ${problems.join('; ')}`);
  else if (ms >= 500) new Logger('Database').log(`quick_check ok (${ms} ms)`);
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
