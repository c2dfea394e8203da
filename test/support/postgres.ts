import { randomBytes } from 'node:crypto';
import { Client } from 'pg';

/**
 * PostgreSQL for tests: every test file gets a database of its own, created on the server given by
 * `TEST_POSTGRES_URL` (default: the local server that scripts/install-test-deps.sh starts) and
 * dropped afterwards, so runs and parallel Jest workers never see each other's rows.
 */
export const TEST_POSTGRES_URL = process.env.TEST_POSTGRES_URL || 'postgres://postgres@127.0.0.1:5432/postgres';

export interface TestDatabase {
  /** `his_test_<pid>_<random>` */
  readonly name: string;
  /** Connection URL of the new database (the server's URL with the database name replaced). */
  readonly url: string;
  /** Ends every session on the database, then drops it. Safe to call twice. */
  drop(): Promise<void>;
}

/** `url` with its database name replaced by `name`. */
export function withDatabase(url: string, name: string): string {
  const u = new URL(url);
  u.pathname = `/${encodeURIComponent(name)}`;
  return u.toString();
}

async function admin<T>(fn: (client: Client) => Promise<T>): Promise<T> {
  const client = new Client({ connectionString: TEST_POSTGRES_URL, connectionTimeoutMillis: 10_000 });
  client.on('error', () => undefined);
  try {
    await client.connect();
  } catch (error) {
    throw new Error(
      `PostgreSQL is not reachable at ${TEST_POSTGRES_URL} (${(error as Error).message}); ` +
        'run scripts/install-test-deps.sh or set TEST_POSTGRES_URL',
      { cause: error },
    );
  }
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

const quote = (name: string) => `"${name.replaceAll('"', '""')}"`;

/** Creates a fresh, empty database. Drop it in `afterAll`. */
export async function createTestDatabase(): Promise<TestDatabase> {
  const name = `his_test_${process.pid}_${randomBytes(6).toString('hex')}`;
  await admin(async (client) => {
    // Two CREATE DATABASE from the same template at the same moment can collide ("source database
    // is being accessed by other users"); the other one finishes quickly, so try again.
    for (let attempt = 1; ; attempt++) {
      try {
        await client.query(`create database ${quote(name)}`);
        return;
      } catch (error) {
        if ((error as { code?: string }).code !== '55006' || attempt >= 10) throw error;
        await new Promise((r) => setTimeout(r, 100 * attempt));
      }
    }
  });
  let dropped = false;
  return {
    name,
    url: withDatabase(TEST_POSTGRES_URL, name),
    async drop() {
      if (dropped) return;
      dropped = true;
      await admin(async (client) => {
        await client.query('select pg_terminate_backend(pid) from pg_stat_activity where datname = $1 and pid <> pg_backend_pid()', [name]);
        await client.query(`drop database if exists ${quote(name)} with (force)`);
      });
    },
  };
}

/** Runs `fn` with a plain client on `url` (outside the code under test), then closes it. */
export async function withClient<T>(url: string, fn: (client: Client) => Promise<T>): Promise<T> {
  const client = new Client({ connectionString: url, connectionTimeoutMillis: 10_000 });
  client.on('error', () => undefined);
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}
