import { types } from 'pg';
import { isConnectionFatal, parseInt8, POSTGRES_TYPES, postgresPoolConfig } from './postgres';

describe('PostgreSQL pool settings', () => {
  it('parses int8 text to a number, and refuses what a number cannot hold exactly', () => {
    expect(parseInt8('1893553445678')).toBe(1_893_553_445_678);
    expect(parseInt8('-42')).toBe(-42);
    expect(parseInt8('9007199254740991')).toBe(Number.MAX_SAFE_INTEGER);
    expect(() => parseInt8('9007199254740992')).toThrow(RangeError);
    expect(() => parseInt8('-9007199254740993')).toThrow(RangeError);
  });

  it('uses that parser for int8 in text format only, and the defaults for everything else', () => {
    const { INT8, INT4, TEXT, FLOAT8 } = types.builtins;
    expect(POSTGRES_TYPES.getTypeParser(INT8, 'text')).toBe(parseInt8);
    expect(POSTGRES_TYPES.getTypeParser(INT8, 'binary')).toBe(types.getTypeParser(INT8, 'binary'));
    for (const oid of [INT4, TEXT, FLOAT8]) expect(POSTGRES_TYPES.getTypeParser(oid, 'text')).toBe(types.getTypeParser(oid, 'text'));
    // The process-wide registry is untouched.
    expect(types.getTypeParser(INT8, 'text')('5')).toBe('5');
  });

  it('builds the pool config: defaults, a statement timeout only when set, the name as a fallback', () => {
    expect(postgresPoolConfig({ url: 'postgres://h/d' })).toEqual({
      connectionString: 'postgres://h/d',
      max: 10,
      connectionTimeoutMillis: 5_000,
      statement_timeout: 30_000,
      idle_in_transaction_session_timeout: 60_000,
      fallback_application_name: 'hybrid-image-search',
      keepAlive: true,
      types: POSTGRES_TYPES,
    });
    const custom = postgresPoolConfig({ url: 'postgres://h/d', poolSize: 3, connectTimeoutMs: 700, statementTimeoutMs: 0, applicationName: 'x' });
    expect(custom).toMatchObject({ max: 3, connectionTimeoutMillis: 700, fallback_application_name: 'x' });
    expect(custom).not.toHaveProperty('statement_timeout');
  });

  it.each([
    ['a constraint violation', { severity: 'ERROR', code: '23505' }, false],
    ['a statement timeout', { severity: 'ERROR', code: '57014' }, false],
    ['the session terminated by the server', { severity: 'FATAL', code: '57P01' }, true],
    ['a server panic', { severity: 'PANIC', code: 'XX000' }, true],
    ['a socket error', Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET' }), true],
    ['the connection closing under the query', new Error('Connection terminated unexpectedly'), true],
  ])('retires the connection after %s: %p', (_name, error, fatal) => {
    expect(isConnectionFatal(error)).toBe(fatal);
  });
});
