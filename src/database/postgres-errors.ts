import { DatabaseError } from 'pg';
import {
  DatabaseBusyError,
  DatabaseCorruptError,
  DatabaseFullError,
  DatabaseIoError,
  DatabaseUnreachableError,
} from './database.errors';

/**
 * Socket error codes (Node's `err.code`) that mean the server could not be reached or the connection
 * died: nothing about the statement itself.
 */
const NETWORK_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ECONNABORTED',
  'EPIPE',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'EHOSTDOWN',
  'ENETUNREACH',
  'ENETDOWN',
  'ENOTFOUND',
  'EAI_AGAIN',
]);

/**
 * node-postgres raises these without any code when a connection is lost under a query, cannot be
 * used any more, or none could be had in time. They are its own fixed texts (pg 8 / pg-pool 3),
 * matched exactly: nothing else carries them.
 */
const DRIVER_CONNECTION_MESSAGES = new Set([
  'Connection terminated',
  'Connection terminated unexpectedly',
  'Connection terminated due to connection timeout',
  'timeout exceeded when trying to connect',
  'Client has encountered a connection error and is not queryable',
  'Client was closed and is not queryable',
  'Query read timeout',
  'timeout expired',
]);

/**
 * The typed error for a PostgreSQL failure that is not the request's fault (see
 * https://www.postgresql.org/docs/current/errcodes-appendix.html), else `error` itself: a constraint
 * violation, bad SQL, a statement timeout or a value out of range stays what it is (a bug → 500).
 *
 * - `phase: 'connect'`: getting a connection from the pool. Whatever fails there without a SQLSTATE
 *   (refused, reset, DNS, the connect timeout, no free connection within it) means the server is out
 *   of reach; a server error there is classified like any other.
 * - `phase: 'query'`: a statement on a connection. Socket errors and the driver's lost-connection
 *   errors mean the server went away; server errors are classified by SQLSTATE.
 *
 * SQLSTATE: class 08 (connection exception), 57P01/57P02 (admin or crash shutdown), 57P03 (cannot
 * connect now: starting up, shutting down, in recovery), 57P05 (idle session timeout) and class 53
 * (too many connections, out of memory, a configuration limit) → DATABASE_UNAVAILABLE; 53100 (disk
 * full) → DATABASE_FULL; 40001/40P01 (serialization failure, deadlock) and 55P03 (lock not available)
 * → DATABASE_BUSY; 25006 (read-only transaction: a standby after a failover) and class 58 (system
 * or I/O error) → DATABASE_UNAVAILABLE as an I/O error; XX001/XX002 (data or index corrupted) →
 * DATABASE_CORRUPT. All but the last are transient.
 */
export function toPostgresDatabaseError(error: unknown, phase: 'connect' | 'query'): unknown {
  if (error instanceof DatabaseError) return fromSqlState(error, error.code);
  const e = error as { code?: unknown; message?: unknown } | null;
  if (typeof e?.code === 'string' && NETWORK_CODES.has(e.code)) return new DatabaseUnreachableError(error);
  if (phase === 'connect') return new DatabaseUnreachableError(error);
  if (typeof e?.message === 'string' && DRIVER_CONNECTION_MESSAGES.has(e.message)) return new DatabaseUnreachableError(error);
  return error;
}

function fromSqlState(error: DatabaseError, state: string | undefined): unknown {
  if (state === undefined) return error;
  switch (state) {
    case '53100':
      return new DatabaseFullError(error);
    case '40001':
    case '40P01':
    case '55P03':
      return new DatabaseBusyError(error);
    case '57P01':
    case '57P02':
    case '57P03':
    case '57P05':
      return new DatabaseUnreachableError(error);
    case '25006':
      return new DatabaseIoError(error);
    case 'XX001':
    case 'XX002':
      return new DatabaseCorruptError(error);
  }
  switch (state.slice(0, 2)) {
    case '08':
    case '53':
      return new DatabaseUnreachableError(error);
    case '58':
      return new DatabaseIoError(error);
  }
  return error;
}
