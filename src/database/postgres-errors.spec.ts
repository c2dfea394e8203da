import { DatabaseError } from 'pg';
import { DatabaseUnavailableError } from './database.errors';
import { toPostgresDatabaseError } from './postgres-errors';

/** A server error as node-postgres builds it from an ErrorResponse message. */
function serverError(code: string, severity = 'ERROR', message = `server said ${code}`): DatabaseError {
  const error = new DatabaseError(message, 0, 'error');
  error.code = code;
  error.severity = severity;
  return error;
}

const socketError = (code: string) => Object.assign(new Error(`connect ${code} 127.0.0.1:5432`), { code, errno: -1, syscall: 'connect' });

describe('toPostgresDatabaseError', () => {
  it.each([
    ['admin shutdown (pg_terminate_backend, a restart)', serverError('57P01', 'FATAL')],
    ['crash shutdown', serverError('57P02', 'FATAL')],
    ['cannot connect now (starting up, in recovery)', serverError('57P03', 'FATAL')],
    ['idle session timeout', serverError('57P05', 'FATAL')],
    ['a connection exception', serverError('08006', 'FATAL')],
    ['connection does not exist', serverError('08003')],
    ['too many connections', serverError('53300', 'FATAL')],
    ['out of memory', serverError('53200')],
  ])('%s → 503 DATABASE_UNAVAILABLE, transient', (_name, error) => {
    const mapped = toPostgresDatabaseError(error, 'query');
    expect(mapped).toBeInstanceOf(DatabaseUnavailableError);
    expect(mapped).toMatchObject({ status: 503, code: 'DATABASE_UNAVAILABLE', transient: true, headers: { 'Retry-After': '5' } });
    expect((mapped as Error).cause).toBe(error);
    // The server's words stay in the cause, never in the answer.
    expect((mapped as Error).message).not.toContain(error.message);
  });

  it.each(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'EHOSTUNREACH', 'ENOTFOUND', 'EAI_AGAIN'])(
    'a socket error %s → DATABASE_UNAVAILABLE, while connecting or under a query',
    (code) => {
      for (const phase of ['connect', 'query'] as const) {
        expect(toPostgresDatabaseError(socketError(code), phase)).toMatchObject({ code: 'DATABASE_UNAVAILABLE', transient: true });
      }
    },
  );

  it.each([
    'Connection terminated unexpectedly',
    'Connection terminated',
    'Connection terminated due to connection timeout',
    'timeout exceeded when trying to connect',
    'Client has encountered a connection error and is not queryable',
    'Client was closed and is not queryable',
  ])('the driver\'s own lost-connection error "%s" → DATABASE_UNAVAILABLE', (message) => {
    expect(toPostgresDatabaseError(new Error(message), 'query')).toMatchObject({ code: 'DATABASE_UNAVAILABLE' });
  });

  it('anything failing to get a connection without a SQLSTATE means the server is out of reach', () => {
    const tls = new Error('The server does not support SSL connections');
    expect(toPostgresDatabaseError(tls, 'connect')).toMatchObject({ code: 'DATABASE_UNAVAILABLE', cause: tls });
    // The same text under a query is not a connection failure the driver is known to raise.
    expect(toPostgresDatabaseError(tls, 'query')).toBe(tls);
  });

  it('disk full → DATABASE_FULL; serialization failure, deadlock, lock not available → DATABASE_BUSY', () => {
    expect(toPostgresDatabaseError(serverError('53100'), 'query')).toMatchObject({ code: 'DATABASE_FULL', transient: true, headers: { 'Retry-After': '30' } });
    for (const code of ['40001', '40P01', '55P03']) {
      expect(toPostgresDatabaseError(serverError(code), 'query')).toMatchObject({ code: 'DATABASE_BUSY', transient: true, headers: { 'Retry-After': '1' } });
    }
  });

  it('a read-only standby and I/O errors → DATABASE_UNAVAILABLE (transient); corrupted data → DATABASE_CORRUPT (not transient)', () => {
    for (const code of ['25006', '58030', '58000']) {
      expect(toPostgresDatabaseError(serverError(code), 'query')).toMatchObject({ code: 'DATABASE_UNAVAILABLE', transient: true });
    }
    for (const code of ['XX001', 'XX002']) {
      expect(toPostgresDatabaseError(serverError(code), 'query')).toMatchObject({ code: 'DATABASE_CORRUPT', transient: false });
    }
  });

  it.each([
    ['a unique violation', serverError('23505')],
    ['a syntax error', serverError('42601')],
    ['an undefined table', serverError('42P01')],
    ['a statement timeout', serverError('57014')],
    ['a bad password (at connect)', serverError('28P01', 'FATAL')],
    ['an unknown database (at connect)', serverError('3D000', 'FATAL')],
  ])('leaves %s as it is (the statement\'s or the configuration\'s fault)', (_name, error) => {
    expect(toPostgresDatabaseError(error, 'query')).toBe(error);
    expect(toPostgresDatabaseError(error, 'connect')).toBe(error);
  });

  it('leaves errors that are not the server\'s alone under a query (an int8 out of range, a bug)', () => {
    const range = new RangeError('int8 value 9007199254740993 is outside JavaScript\'s safe integer range');
    expect(toPostgresDatabaseError(range, 'query')).toBe(range);
    const bug = new TypeError('cannot read properties of undefined');
    expect(toPostgresDatabaseError(bug, 'query')).toBe(bug);
  });
});
