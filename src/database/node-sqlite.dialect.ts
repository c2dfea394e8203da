import { DatabaseSync, SQLInputValue, StatementSync } from 'node:sqlite';
import { SqliteDialect } from 'kysely';
import type { SqliteDatabase, SqliteStatement } from 'kysely';

/**
 * Kysely over Node's built-in `node:sqlite` (no native build, so it loads under Node 24 whatever
 * headers npm compiled against).
 *
 * Kysely's `SqliteDialect` is written against better-sqlite3's `prepare()` whose statements know
 * whether they return rows (`reader`) and take their parameters as one array. `StatementSync` has
 * the same `all/run/iterate` but with spread parameters and `columns()` instead of `reader`, so a
 * thin adapter is enough to reuse Kysely's driver, adapter, introspector and query compiler as they
 * are. Kysely's `SqliteAdapter` declares a single connection, so Kysely's runtime driver already
 * serializes queries and transactions behind its connection mutex: one transaction at a time, and
 * no query from elsewhere slips into it.
 */
export class NodeSqliteDialect extends SqliteDialect {
  constructor(database: DatabaseSync, options: { statementCacheSize?: number } = {}) {
    super({ database: new NodeSqliteDatabase(database, options.statementCacheSize ?? 64) });
  }
}

/** Pragmas applied to every database this service opens. */
export const SQLITE_PRAGMAS = {
  // First, so that switching the journal mode below also waits rather than fails when another
  // process (a CLI, a backup) holds the lock.
  busy_timeout: 5000,
  // Readers never block the writer and commits need one fsync of the WAL, not of the database.
  journal_mode: 'WAL',
  // Durable across process crashes; a power loss may lose the last commits but never corrupts.
  synchronous: 'NORMAL',
  foreign_keys: 'ON',
} as const;

/** Opens (creating if needed) a SQLite database file, or `:memory:`, with `SQLITE_PRAGMAS` applied. */
export function openSqlite(filename: string): DatabaseSync {
  const db = new DatabaseSync(filename);
  try {
    for (const [name, value] of Object.entries(SQLITE_PRAGMAS)) {
      db.exec(`PRAGMA ${name} = ${value}`);
    }
  } catch (error) {
    db.close();
    throw error;
  }
  return db;
}

class NodeSqliteDatabase implements SqliteDatabase {
  // Kysely compiles the same parameterized SQL for every call of a query, so re-preparing each
  // time would be wasted work; a small LRU of prepared statements avoids it.
  private readonly statements = new Map<string, NodeSqliteStatement>();

  constructor(
    private readonly db: DatabaseSync,
    private readonly cacheSize: number,
  ) {}

  prepare(sql: string): SqliteStatement {
    const cached = this.statements.get(sql);
    if (cached) {
      this.statements.delete(sql);
      this.statements.set(sql, cached);
      return cached;
    }
    const statement = new NodeSqliteStatement(this.db.prepare(sql));
    if (this.cacheSize > 0) {
      this.statements.set(sql, statement);
      if (this.statements.size > this.cacheSize) {
        this.statements.delete(this.statements.keys().next().value as string);
      }
    }
    return statement;
  }

  close(): void {
    this.statements.clear();
    if (this.db.isOpen) this.db.close();
  }
}

class NodeSqliteStatement implements SqliteStatement {
  readonly reader: boolean;

  constructor(private readonly statement: StatementSync) {
    // A statement returns rows exactly when it has result columns (SELECT, PRAGMA, … RETURNING).
    this.reader = statement.columns().length > 0;
  }

  all(parameters: ReadonlyArray<unknown>): unknown[] {
    return this.statement.all(...(parameters as SQLInputValue[]));
  }

  run(parameters: ReadonlyArray<unknown>): { changes: number | bigint; lastInsertRowid: number | bigint } {
    return this.statement.run(...(parameters as SQLInputValue[]));
  }

  iterate(parameters: ReadonlyArray<unknown>): IterableIterator<unknown> {
    return this.statement.iterate(...(parameters as SQLInputValue[]));
  }
}
