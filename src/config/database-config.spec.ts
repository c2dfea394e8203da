import { join } from 'node:path';
import { databaseFile, databaseTarget } from '../database/database';
import { ConfigError, loadConfig } from './app-config';
import { isPostgresUrl, redactUrl } from './database-url';

function problemsOf(env: Record<string, string>): string[] {
  try {
    loadConfig(env);
  } catch (error) {
    if (error instanceof ConfigError) return error.problems;
    throw error;
  }
  throw new Error('expected a ConfigError');
}

describe('database configuration', () => {
  it('defaults to SQLite under DATA_DIR, with pool settings ready for PostgreSQL', () => {
    const config = loadConfig({ DATA_DIR: '/tmp/his-data' });
    expect(config.database).toEqual({ url: undefined, poolSize: 10, connectTimeoutMs: 5_000, statementTimeoutMs: 30_000, busyTimeoutMs: 1_000 });
    expect(databaseTarget(config)).toEqual({ dialect: 'sqlite', filename: databaseFile('/tmp/his-data') });
    expect(databaseFile('/tmp/his-data')).toBe(join('/tmp/his-data', 'hybrid-image-search.sqlite'));
    // An empty value is the same as unset.
    expect(loadConfig({ DATABASE_URL: '  ' }).database.url).toBeUndefined();
  });

  it('selects PostgreSQL when DATABASE_URL is set, with the pool settings and the service name', () => {
    const config = loadConfig({
      DATABASE_URL: 'postgresql://svc:s3cret@db.internal:6432/images?sslmode=require',
      DATABASE_POOL_SIZE: '25',
      DATABASE_CONNECT_TIMEOUT_MS: '2500',
      DATABASE_STATEMENT_TIMEOUT_MS: '0',
      OTEL_SERVICE_NAME: 'his-eu-1',
    });
    expect(databaseTarget(config)).toEqual({
      dialect: 'postgres',
      url: 'postgresql://svc:s3cret@db.internal:6432/images?sslmode=require',
      poolSize: 25,
      connectTimeoutMs: 2500,
      statementTimeoutMs: 0,
      applicationName: 'his-eu-1',
    });
  });

  it.each([
    'postgres://postgres@127.0.0.1:5432/postgres',
    'postgresql://u:p%40ss@db/name',
    'postgres://db.example.com',
    'postgresql:///images?host=/var/run/postgresql',
  ])('accepts %s', (url) => {
    expect(isPostgresUrl(url)).toBe(true);
    expect(loadConfig({ DATABASE_URL: url }).database.url).toBe(url);
  });

  it.each([
    ['another scheme', 'mysql://root@127.0.0.1/db'],
    ['http', 'http://127.0.0.1:5432'],
    ['no host', 'postgres:///images'],
    ['not a URL', 'host=127.0.0.1 dbname=images'],
  ])('refuses %s, naming DATABASE_URL', (_name, url) => {
    expect(problemsOf({ DATABASE_URL: url })).toEqual([expect.stringMatching(/^DATABASE_URL: DATABASE_URL must be a postgres:\/\/ or postgresql:\/\/ URL/)]);
  });

  it('never prints the password of a refused DATABASE_URL', () => {
    const [problem] = problemsOf({ DATABASE_URL: 'mysql://admin:hunter2-secret@db/x' });
    expect(problem).toContain('mysql://admin:***@db/x');
    expect(problem).not.toContain('hunter2');
  });

  it('refuses pool settings out of range, naming each', () => {
    const problems = problemsOf({ DATABASE_POOL_SIZE: '0', DATABASE_CONNECT_TIMEOUT_MS: 'soon', DATABASE_STATEMENT_TIMEOUT_MS: '-1' });
    expect(new Set(problems.map((p) => p.split(':')[0]))).toEqual(
      new Set(['DATABASE_POOL_SIZE', 'DATABASE_CONNECT_TIMEOUT_MS', 'DATABASE_STATEMENT_TIMEOUT_MS']),
    );
  });
});

describe('redactUrl', () => {
  it.each([
    ['postgres://u:secret@h:5432/d', 'postgres://u:***@h:5432/d'],
    ['postgres://u@h/d', 'postgres://u@h/d'],
    ['postgres://h/d?sslmode=require', 'postgres://h/d?sslmode=require'],
    ['not a url //user:secret@host', 'not a url //user:***@host'],
  ])('%s → %s', (input, output) => {
    expect(redactUrl(input)).toBe(output);
  });
});
