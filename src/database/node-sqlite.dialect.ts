import { DatabaseSync, SQLInputValue, StatementSync } from 'node:sqlite';
import { setImmediate as yieldToEventLoop, setTimeout as sleep } from 'node:timers/promises';
import { CompiledQuery, SqliteAdapter, SqliteDialect } from 'kysely';
import type {
  DatabaseConnection,
  DialectAdapter,
  Driver,
  QueryCompiler,
  QueryResult,
  SqliteDatabase,
  SqliteStatement,
  TransactionSettings,
} from 'kysely';
import { DatabaseFaults } from './database-faults';
import { DatabaseBusyError, DatabaseCorruptError, DatabaseFullError, DatabaseIoError } from './database.errors';

export interface NodeSqliteOptions {
  /** Prepared statements kept per connection (LRU); 0 turns the cache off. */
  statementCacheSize?: number;
  /**
   * How long a statement outside a transaction keeps retrying, asynchronously, while another
   * connection holds the database lock, before it fails with `DatabaseBusyError` (503
   * DATABASE_BUSY). Default 1000.
   */
  busyTimeoutMs?: number;
  /** Where a damaged file seen at run time is recorded (readiness reads it). */
  faults?: DatabaseFaults;
}

/**
 * Kysely over Node's built-in `node:sqlite` (no native build, so it loads under Node 24 whatever
 * headers npm compiled against).
 *
 * Kysely's `SqliteDialect` is written against better-sqlite3's `prepare()` whose statements know
 * whether they return rows (`reader`) and take their parameters as one array. `StatementSync` has
 * the same `all/run/iterate` but with spread parameters and `columns()` instead of `reader`, so a
 * thin adapter is enough to reuse Kysely's driver, introspector and query compiler as they are.
 *
 * node:sqlite is synchronous: while SQLite waits for another process's lock (its busy handler),
 * the event loop waits with it. So a serving database waits at most `SQLITE_SERVING_BUSY_TIMEOUT_MS`
 * per attempt, and `LockWaitDriver` retries a statement that found the database locked
 * asynchronously, stepping aside meanwhile so reads (which WAL lets through) and other requests
 * go on. It also turns SQLite's failures into typed 503 errors (`DatabaseUnavailableError`).
 */
export class NodeSqliteDialect extends SqliteDialect {
  readonly #database: DatabaseSync;
  readonly #options: NodeSqliteOptions;

  constructor(database: DatabaseSync, options: NodeSqliteOptions = {}) {
    super({ database: new NodeSqliteDatabase(database, options.statementCacheSize ?? 64) });
    this.#database = database;
    this.#options = options;
  }

  override createDriver(): Driver {
    return new LockWaitDriver(super.createDriver(), this.#database, {
      busyTimeoutMs: this.#options.busyTimeoutMs ?? DEFAULT_BUSY_TIMEOUT_MS,
      faults: this.#options.faults ?? new DatabaseFaults(),
    });
  }

  override createAdapter(): DialectAdapter {
    // LockWaitDriver serializes its one connection itself (a lease at a time, transactions
    // included), so that a statement waiting for another process's lock can let others by.
    return new SerializedSqliteAdapter();
  }
}

export const DEFAULT_BUSY_TIMEOUT_MS = 1000;
/** SQLite's own (synchronous, event-loop blocking) wait for a lock, per attempt, once serving. */
export const SQLITE_SERVING_BUSY_TIMEOUT_MS = 20;
/** First pause between attempts on a locked database; doubles up to `MAX_RETRY_PAUSE_MS`. */
const FIRST_RETRY_PAUSE_MS = 5;
const MAX_RETRY_PAUSE_MS = 100;

/** Pragmas applied to every database this service opens. */
export const SQLITE_PRAGMAS = {
  // First, so that switching the journal mode below also waits rather than fails when another
  // process (a CLI, a backup) holds the lock. This long, blocking wait is for opening and
  // migrating, before anything is served; `createDatabase` then lowers it to
  // SQLITE_SERVING_BUSY_TIMEOUT_MS and leaves longer waits to LockWaitDriver.
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
    throw toDatabaseError(error);
  }
  return db;
}

/** SQLite primary result codes (https://sqlite.org/rescode.html) this layer tells apart. */
const SQLITE = { READONLY: 8, IOERR: 10, CORRUPT: 11, FULL: 13, CANTOPEN: 14, PROTOCOL: 15, BUSY: 5, NOTADB: 26 } as const;

/** The primary SQLite result code of a node:sqlite error, or undefined for anything else. */
export function sqliteResultCode(error: unknown): number | undefined {
  const e = error as { code?: unknown; errcode?: unknown } | null;
  return e?.code === 'ERR_SQLITE_ERROR' && typeof e.errcode === 'number' ? e.errcode & 0xff : undefined;
}

/**
 * The typed error for a node:sqlite failure that is not the request's fault, else `error` itself
 * (a constraint violation or bad SQL is a bug and stays a 500).
 */
export function toDatabaseError(error: unknown): unknown {
  switch (sqliteResultCode(error)) {
    case SQLITE.BUSY:
      return new DatabaseBusyError(error);
    case SQLITE.FULL:
      return new DatabaseFullError(error);
    case SQLITE.CORRUPT:
    case SQLITE.NOTADB:
      return new DatabaseCorruptError(error);
    case SQLITE.IOERR:
    case SQLITE.READONLY:
    case SQLITE.CANTOPEN:
    case SQLITE.PROTOCOL:
      return new DatabaseIoError(error);
  }
  // node:sqlite after close(): "database is not open".
  if ((error as { code?: unknown } | null)?.code === 'ERR_INVALID_STATE') return new DatabaseIoError(error);
  return error;
}

class SerializedSqliteAdapter extends SqliteAdapter {
  override get supportsMultipleConnections(): boolean {
    return true;
  }
}

/** First come, first served; `lock()` resolves when the caller holds it. */
class FifoMutex {
  private held = false;
  private readonly waiting: (() => void)[] = [];

  lock(): Promise<void> {
    if (!this.held) {
      this.held = true;
      return Promise.resolve();
    }
    return new Promise((resolve) => this.waiting.push(resolve));
  }

  unlock(): void {
    const next = this.waiting.shift();
    if (next) next();
    else this.held = false;
  }
}

interface LockWaitPolicy {
  busyTimeoutMs: number;
  faults: DatabaseFaults;
}

/**
 * Wraps Kysely's SqliteDriver. Each `acquireConnection` is a lease on the single connection, held
 * until `releaseConnection` (so a transaction sees nothing from elsewhere). A statement outside a
 * transaction that finds the database locked gives the lease back, pauses (5 ms, doubling to 100 ms),
 * takes it again and retries, until `busyTimeoutMs` has passed since it started; then it fails with
 * `DatabaseBusyError`. Once the database has been locked continuously for longer than that, new
 * statements try once and fail at once, so a queue of writes does not wait the timeout one after
 * another. Inside a transaction a locked statement fails at once (the transaction is rolled back).
 */
class LockWaitDriver implements Driver {
  private readonly mutex = new FifoMutex();
  /** Since when writes have found the database locked, with no write succeeding since. */
  private lockedSince: number | null = null;

  constructor(
    private readonly inner: Driver,
    private readonly db: DatabaseSync,
    private readonly policy: LockWaitPolicy,
  ) {}

  init(): Promise<void> {
    return this.inner.init();
  }

  async acquireConnection(): Promise<DatabaseConnection> {
    const connection = await this.inner.acquireConnection();
    await this.mutex.lock();
    return new Lease(connection, this);
  }

  async releaseConnection(connection: DatabaseConnection): Promise<void> {
    (connection as Lease).release();
  }

  /**
   * `BEGIN IMMEDIATE`, not Kysely's plain `BEGIN`: the transaction takes the write lock at its start,
   * through the same asynchronous lock wait as a single statement (it is not yet a transaction, so
   * `execute` may retry it). A deferred `BEGIN` would take the lock at its first write, inside the
   * transaction, where a locked database fails at once.
   */
  async beginTransaction(connection: DatabaseConnection, _settings: TransactionSettings): Promise<void> {
    await connection.executeQuery(CompiledQuery.raw('begin immediate'));
  }

  commitTransaction(connection: DatabaseConnection): Promise<void> {
    return this.inner.commitTransaction(connection);
  }

  /**
   * Skipped when SQLite has already rolled the transaction back itself, as it does on some errors
   * (SQLITE_FULL, SQLITE_IOERR, SQLITE_NOMEM…): a ROLLBACK would then fail ("no transaction is
   * active") and hide the typed error that ended the transaction.
   */
  async rollbackTransaction(connection: DatabaseConnection): Promise<void> {
    if (!this.db.isTransaction) return;
    await this.inner.rollbackTransaction(connection);
  }

  async savepoint(connection: DatabaseConnection, name: string, compileQuery: QueryCompiler['compileQuery']): Promise<void> {
    await this.inner.savepoint!(connection, name, compileQuery);
  }

  async rollbackToSavepoint(connection: DatabaseConnection, name: string, compileQuery: QueryCompiler['compileQuery']): Promise<void> {
    await this.inner.rollbackToSavepoint!(connection, name, compileQuery);
  }

  async releaseSavepoint(connection: DatabaseConnection, name: string, compileQuery: QueryCompiler['compileQuery']): Promise<void> {
    await this.inner.releaseSavepoint!(connection, name, compileQuery);
  }

  destroy(): Promise<void> {
    return this.inner.destroy();
  }

  /** Runs one statement for `lease`, waiting out another connection's lock as described above. */
  async execute<R>(lease: Lease, connection: DatabaseConnection, query: CompiledQuery): Promise<QueryResult<R>> {
    const started = performance.now();
    let pause = FIRST_RETRY_PAUSE_MS;
    for (;;) {
      // While the database is locked, every attempt may block for SQLITE_SERVING_BUSY_TIMEOUT_MS:
      // let pending I/O (other requests, probes) run between them.
      if (this.lockedSince !== null) await yieldToEventLoop();
      try {
        const result = await connection.executeQuery<R>(query);
        if (!isRead(query.sql)) this.lockedSince = null;
        return result;
      } catch (error) {
        if (sqliteResultCode(error) !== SQLITE.BUSY || this.db.isTransaction) throw this.translate(error);
        const now = performance.now();
        this.lockedSince ??= now;
        const waited = Math.max(now - started, now - this.lockedSince);
        if (waited + pause > this.policy.busyTimeoutMs) throw this.translate(error);
        lease.stepAside();
        await sleep(pause);
        await lease.resume();
        pause = Math.min(pause * 2, MAX_RETRY_PAUSE_MS);
      }
    }
  }

  translate(error: unknown): unknown {
    const translated = toDatabaseError(error);
    if (translated instanceof DatabaseCorruptError) this.policy.faults.markCorrupt((error as Error).message);
    return translated;
  }

  lock(): Promise<void> {
    return this.mutex.lock();
  }

  unlock(): void {
    this.mutex.unlock();
  }
}

/** One holder's turn on the connection. */
class Lease implements DatabaseConnection {
  private holding = true;

  constructor(
    private readonly connection: DatabaseConnection,
    private readonly driver: LockWaitDriver,
  ) {}

  executeQuery<R>(query: CompiledQuery): Promise<QueryResult<R>> {
    return this.driver.execute<R>(this, this.connection, query);
  }

  async *streamQuery<R>(query: CompiledQuery, chunkSize: number): AsyncIterableIterator<QueryResult<R>> {
    try {
      yield* this.connection.streamQuery<R>(query, chunkSize);
    } catch (error) {
      throw this.driver.translate(error);
    }
  }

  stepAside(): void {
    this.holding = false;
    this.driver.unlock();
  }

  async resume(): Promise<void> {
    await this.driver.lock();
    this.holding = true;
  }

  release(): void {
    if (!this.holding) return;
    this.holding = false;
    this.driver.unlock();
  }
}

/** Statements that only read: their success says nothing about the write lock. */
function isRead(sql: string): boolean {
  return /^\s*(select|pragma\s+\w+\s*;?\s*$)/i.test(sql);
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
