import { mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { Logger } from '@nestjs/common';
import { Kysely, sql } from 'kysely';
import { Migrator } from 'kysely/migration';
import type { MigrationResult } from 'kysely/migration';
import type { DatabaseSchema } from './database.schema';
import { migrationProvider } from './migrations';
import { DatabaseFaults } from './database-faults';
import { NodeSqliteDialect, openSqlite, SQLITE_SERVING_BUSY_TIMEOUT_MS } from './node-sqlite.dialect';

/** Injection token of the `Kysely<DatabaseSchema>` instance. */
export const KYSELY = Symbol('KYSELY');

export type Database = Kysely<DatabaseSchema>;

export const DATABASE_FILE_NAME = 'hybrid-image-search.sqlite';

/** Where the SQLite file lives for a given `DATA_DIR`. */
export function databaseFile(dataDir: string): string {
  return join(dataDir, DATABASE_FILE_NAME);
}

export interface DatabaseOptions {
  /** See `NodeSqliteOptions.busyTimeoutMs` (DATABASE_BUSY_TIMEOUT_MS). */
  busyTimeoutMs?: number;
  /** Records a damaged file (found by the start-up check or at run time) for readiness. */
  faults?: DatabaseFaults;
}

/**
 * Opens the SQLite database at `filename` (`:memory:` for tests), creating its folder and file if
 * needed, migrates it to the latest schema and checks a file database with `PRAGMA quick_check`
 * (≈ 1.3 ms per 1000 generations here; a damaged file is logged and recorded in `faults`, so the
 * service starts but is not ready). Then SQLite's own, blocking lock wait is lowered to
 * SQLITE_SERVING_BUSY_TIMEOUT_MS. Close it with `db.destroy()`.
 */
export async function createDatabase(filename: string, options: DatabaseOptions = {}): Promise<Database> {
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
