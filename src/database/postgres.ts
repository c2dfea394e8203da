import { Logger } from '@nestjs/common';
import { Pool, PoolClient, PoolConfig, types as globalTypes } from 'pg';
import type { PostgresPool } from 'kysely';
import type { CustomTypesConfig } from 'pg';
import { toPostgresDatabaseError } from './postgres-errors';

/** How the service connects to PostgreSQL (see `AppConfig.database`). */
export interface PostgresOptions {
  /** `postgres://` or `postgresql://` connection URL. */
  url: string;
  /** Connections in the pool (default 10). */
  poolSize?: number;
  /** Opening a connection, or waiting for a free one, fails after this long (default 5000). */
  connectTimeoutMs?: number;
  /** The server cancels a statement that runs longer; 0 = no limit (default 30 000). */
  statementTimeoutMs?: number;
  /** Shown in `pg_stat_activity`; an `application_name` in the URL wins. */
  applicationName?: string;
}

export const DEFAULT_POSTGRES_OPTIONS = {
  poolSize: 10,
  connectTimeoutMs: 5_000,
  statementTimeoutMs: 30_000,
  applicationName: 'hybrid-image-search',
} as const;

/** A session that sits idle inside a transaction holds locks: the server ends it after this long. */
const IDLE_IN_TRANSACTION_TIMEOUT_MS = 60_000;

const INT8_OID = globalTypes.builtins.INT8;

/**
 * `bigint` (int8) columns hold our millisecond timestamps and `count(*)` results. node-postgres
 * returns them as strings, since int8 can exceed 2^53; ours never come near, so they are parsed to
 * numbers, and a value that could not be represented exactly fails the query instead of being
 * silently rounded.
 */
export function parseInt8(text: string): number {
  const value = Number(text);
  if (!Number.isSafeInteger(value)) {
    throw new RangeError(`int8 value ${text} is outside JavaScript's safe integer range`);
  }
  return value;
}

/**
 * The type parsers of this service's pools. Given per pool (`PoolConfig.types`), never set on the
 * module-wide `pg.types`: other code in the process (BullMQ's PostgreSQL backend, a library) shares
 * the `pg` module and must keep its defaults.
 */
export const POSTGRES_TYPES: CustomTypesConfig = {
  getTypeParser: ((oid: number, format?: 'text' | 'binary') =>
    oid === INT8_OID && format !== 'binary'
      ? parseInt8
      : globalTypes.getTypeParser(oid, format ?? 'text')) as CustomTypesConfig['getTypeParser'],
};

/** `pg` pool settings for `options`; `statementTimeoutMs: 0` leaves statements unbounded. */
export function postgresPoolConfig(options: PostgresOptions): PoolConfig {
  const o = { ...DEFAULT_POSTGRES_OPTIONS, ...options };
  return {
    connectionString: o.url,
    max: o.poolSize,
    connectionTimeoutMillis: o.connectTimeoutMs,
    // The server-side limit: it cancels the statement and the connection stays usable.
    ...(o.statementTimeoutMs > 0 ? { statement_timeout: o.statementTimeoutMs } : {}),
    idle_in_transaction_session_timeout: IDLE_IN_TRANSACTION_TIMEOUT_MS,
    // A fallback, so that `?application_name=` in the URL still wins.
    fallback_application_name: o.applicationName,
    // Dead peers (a failed-over server, a dropped NAT entry) are noticed on idle connections too.
    keepAlive: true,
    types: POSTGRES_TYPES,
  };
}

/**
 * Whether the connection a failed query ran on can be trusted with the next one. Only an SQL error
 * at level `ERROR` (a constraint, a statement timeout, a bad value) leaves the session as it was;
 * anything else — `FATAL`/`PANIC` from the server (a restart, a failover, `pg_terminate_backend`),
 * a socket error, a driver error — retires the connection: a new one costs a few milliseconds,
 * reusing a dead one costs a request.
 */
export function isConnectionFatal(error: unknown): boolean {
  return (error as { severity?: unknown } | null)?.severity !== 'ERROR';
}

/**
 * A `pg` pool for Kysely whose connection failures are logged and contained, never thrown at the
 * process, and whose dead connections are never handed out again.
 *
 * - node-postgres emits `error` on a client whose connection dies: on the pool for an idle client
 *   (`pool.on('error')`), and on the client itself while it is checked out (a server restart or a
 *   `pg_terminate_backend` during a query). An `error` event without a listener is an uncaught
 *   exception that ends the process, so both get one: the pool's logs and drops the client; the
 *   client's stays quiet, because the query it was running has already been rejected with that
 *   error.
 * - When the server ends a session during a query, the query fails with a FATAL error before the
 *   socket closes, so the pool would take the client back as healthy and fail the next query on
 *   it too. A client whose query failed that way is released with "destroy" instead.
 * - With `translateErrors` (the default), failures that are the server's and not the statement's
 *   (unreachable, shutting down, disk full, deadlock…) reject with the typed
 *   `DatabaseUnavailableError`s (503 + Retry-After; `transient` for retries), the driver's error in
 *   `cause`; see `toPostgresDatabaseError`. The migrations at start keep the driver's own errors, so
 *   a start that fails says why.
 */
export function createPostgresPool(
  options: PostgresOptions,
  config: Partial<PoolConfig> = {},
  { logger = new Logger('Database'), translateErrors = true }: { logger?: Logger; translateErrors?: boolean } = {},
): KyselyPgPool {
  const pool = new Pool({ ...postgresPoolConfig(options), ...config });
  const broken = new WeakSet<object>();
  pool.on('error', (error: Error) => {
    logger.warn(`PostgreSQL connection lost while idle (${error.message}); the pool opens a new one when needed`);
  });
  pool.on('connect', (client: PoolClient) => {
    client.on('error', () => undefined);
    const query = client.query as (...args: unknown[]) => unknown;
    (client as { query: unknown }).query = function (this: PoolClient, ...args: unknown[]) {
      const result = query.apply(this, args);
      if (!(result instanceof Promise)) return result;
      return result.catch((error: unknown) => {
        // Judged on the driver's own error, before it is translated.
        if (isConnectionFatal(error)) broken.add(client);
        throw translateErrors ? toPostgresDatabaseError(error, 'query') : error;
      });
    };
  });
  return new KyselyPgPool(pool, broken, translateErrors);
}

/** The pool as Kysely's `PostgresDialect` sees it (`connect`, `end`, `options`, `Client`). */
export class KyselyPgPool implements PostgresPool {
  constructor(
    readonly pool: Pool,
    private readonly broken: WeakSet<object>,
    private readonly translateErrors = true,
  ) {}

  get options(): Pool['options'] {
    return this.pool.options;
  }

  /** Kysely opens a separate client of this class to cancel a query. */
  get Client(): PostgresPool['Client'] {
    return (this.pool as unknown as { Client: PostgresPool['Client'] }).Client;
  }

  async connect(): Promise<PoolClient> {
    let client: PoolClient;
    try {
      client = await this.pool.connect();
    } catch (error) {
      throw this.translateErrors ? toPostgresDatabaseError(error, 'connect') : error;
    }
    const release = client.release;
    client.release = (destroy?: boolean | Error) => release(destroy || this.broken.has(client));
    return client;
  }

  end(): Promise<void> {
    return this.pool.end();
  }
}
