import { createServer } from 'node:net';
import { Logger } from '@nestjs/common';
import { sql } from 'kysely';
import { types as pgTypes } from 'pg';
import { createDatabase, Database, migrateToLatest } from '../../src/database/database';
import { MIGRATIONS } from '../../src/database/migrations';
import { PostgresOptions } from '../../src/database/postgres';
import { createTestDatabase, TestDatabase, withClient } from '../support/postgres';
import { startTcpProxy } from '../support/tcp-proxy';

/** Kysely's PostgreSQL migration lock (an advisory lock id in kysely/dist/.../postgres-adapter.js). */
const KYSELY_MIGRATION_LOCK = '3853314791062309107';

const open = (url: string, options: Partial<PostgresOptions> = {}) => createDatabase({ dialect: 'postgres', url, ...options });

async function until<T>(check: () => Promise<T | undefined>, what: string, timeoutMs = 20_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('createDatabase on PostgreSQL', () => {
  let testDb: TestDatabase;
  let warn: jest.SpyInstance;

  beforeAll(async () => {
    testDb = await createTestDatabase();
  });

  afterAll(async () => {
    await testDb?.drop();
  });

  beforeEach(() => {
    warn = jest.spyOn(Logger.prototype, 'warn').mockImplementation(() => undefined);
  });

  afterEach(() => {
    warn.mockRestore();
  });

  it('creates the same schema as on SQLite: columns, primary key and the descending history indexes', async () => {
    const db = await open(testDb.url);
    try {
      const columns = await sql<{ column_name: string; data_type: string; is_nullable: string }>`
        select column_name, data_type, is_nullable from information_schema.columns
        where table_schema = current_schema() and table_name = 'generations' order by ordinal_position`.execute(db);
      expect(columns.rows.map((c) => [c.column_name, c.data_type, c.is_nullable])).toEqual([
        ['id', 'text', 'NO'],
        ['status', 'text', 'NO'],
        ['stage', 'text', 'NO'],
        ['prompt', 'text', 'NO'],
        ['model', 'text', 'NO'],
        ['aspect_ratio', 'text', 'NO'],
        ['count', 'integer', 'NO'],
        ['palette_size', 'integer', 'NO'],
        ['created_at', 'bigint', 'NO'],
        ['started_at', 'bigint', 'YES'],
        ['completed_at', 'bigint', 'YES'],
        ['timings', 'text', 'NO'],
        ['images', 'text', 'NO'],
        ['input_tokens', 'integer', 'NO'],
        ['output_tokens', 'integer', 'NO'],
        ['error_code', 'text', 'YES'],
        ['error_message', 'text', 'YES'],
        ['updated_at', 'bigint', 'NO'],
        ['owner', 'text', 'YES'],
        ['client', 'text', 'YES'],
        ['reference_ids', 'text', 'NO'],
        ['palette_hint', 'integer', 'NO'],
      ]);
      const indexes = await sql<{ indexname: string; indexdef: string }>`
        select indexname, indexdef from pg_indexes where schemaname = current_schema() and tablename = 'generations' order by indexname`.execute(db);
      expect(Object.fromEntries(indexes.rows.map((r) => [r.indexname, r.indexdef.replace(/^.* USING /, '')]))).toEqual({
        generations_pkey: 'btree (id)',
        generations_created_at_id_idx: 'btree (created_at DESC, id DESC)',
        generations_owner_created_at_id_idx: 'btree (owner, created_at DESC, id DESC)',
        generations_status_idx: 'btree (status)',
        generations_active_client_idx: "btree (client) WHERE (status = ANY (ARRAY['queued'::text, 'running'::text]))",
      });
    } finally {
      await db.destroy();
    }
  });

  it('migrates idempotently: a reopen applies nothing and keeps the data', async () => {
    const db = await open(testDb.url);
    await sql`insert into generations (id, status, stage, prompt, model, aspect_ratio, count, palette_size, created_at, updated_at)
              values ('g1', 'queued', 'queued', 'p', 'm', '1:1', 1, 5, 1, 1)`.execute(db);
    expect(await migrateToLatest(db)).toEqual([]);
    await db.destroy();

    const reopened = await open(testDb.url);
    try {
      expect(await migrateToLatest(reopened)).toEqual([]);
      const applied = await sql<{ name: string }>`select name from kysely_migration order by name`.execute(reopened);
      expect(applied.rows.map((r) => r.name)).toEqual(Object.keys(MIGRATIONS).sort());
      expect(await reopened.selectFrom('generations').select('id').execute()).toEqual([{ id: 'g1' }]);
    } finally {
      await reopened.destroy();
    }
  });

  it('lets 4 instances start at once on a fresh database: all succeed and each migration runs once', async () => {
    const fresh = await createTestDatabase();
    const dbs: Database[] = [];
    try {
      const started = await Promise.allSettled(Array.from({ length: 4 }, () => open(fresh.url)));
      for (const s of started) if (s.status === 'fulfilled') dbs.push(s.value);
      expect(started.map((s) => s.status)).toEqual(['fulfilled', 'fulfilled', 'fulfilled', 'fulfilled']);
      const applied = await sql<{ name: string; n: number }>`select name, count(*) as n from kysely_migration group by name order by name`.execute(dbs[0]);
      expect(applied.rows).toEqual(Object.keys(MIGRATIONS).sort().map((name) => ({ name, n: 1 })));
      // Every instance works on the one table.
      await Promise.all(dbs.map((db) => sql`select count(*) from generations`.execute(db)));
    } finally {
      await Promise.all(dbs.map((db) => db.destroy()));
      await fresh.drop();
    }
  });

  it('waits for another instance that holds the migration lock, however long, without the statement timeout', async () => {
    const fresh = await createTestDatabase();
    try {
      await withClient(fresh.url, async (holder) => {
        await holder.query(`select pg_advisory_lock(${KYSELY_MIGRATION_LOCK})`);
        const opening = open(fresh.url, { statementTimeoutMs: 100 });
        opening.catch(() => undefined);
        // The new instance is blocked on the lock: well past its 100 ms statement timeout once it
        // has waited 300 ms.
        await until(async () => {
          const { rows } = await holder.query(
            "select 1 from pg_stat_activity where datname = $1 and wait_event_type = 'Lock' and query like '%pg_advisory_lock%'",
            [fresh.name],
          );
          return rows.length > 0 ? true : undefined;
        }, 'the migration to wait on the lock');
        await new Promise((r) => setTimeout(r, 300));
        await holder.query(`select pg_advisory_unlock(${KYSELY_MIGRATION_LOCK})`);
        const db = await opening;
        try {
          const applied = await sql<{ name: string }>`select name from kysely_migration order by name`.execute(db);
          expect(applied.rows.map((r) => r.name)).toEqual(Object.keys(MIGRATIONS).sort());
        } finally {
          await db.destroy();
        }
      });
    } finally {
      await fresh.drop();
    }
  });

  it('sets the pool up: size, statement timeout, application name (the URL may override it)', async () => {
    const db = await open(testDb.url, { poolSize: 2, statementTimeoutMs: 1500 });
    try {
      const settings = await sql<{ st: string; app: string }>`select current_setting('statement_timeout') as st, current_setting('application_name') as app`.execute(db);
      expect(settings.rows).toEqual([{ st: '1500ms', app: 'hybrid-image-search' }]);
      // Five queries at once share the pool's two connections.
      const pids = await Promise.all(
        Array.from({ length: 5 }, async () => (await sql<{ pid: number }>`select pg_backend_pid() as pid, pg_sleep(0.05)`.execute(db)).rows[0].pid),
      );
      expect(new Set(pids).size).toBeLessThanOrEqual(2);
    } finally {
      await db.destroy();
    }
    const named = await open(`${testDb.url}?application_name=worker-7`);
    try {
      const { rows } = await sql<{ app: string }>`select current_setting('application_name') as app`.execute(named);
      expect(rows).toEqual([{ app: 'worker-7' }]);
    } finally {
      await named.destroy();
    }
  });

  it('cancels a statement that outlives the statement timeout, and the connection stays usable', async () => {
    const db = await open(testDb.url, { poolSize: 1, statementTimeoutMs: 100 });
    try {
      await expect(sql`select pg_sleep(30)`.execute(db)).rejects.toMatchObject({ code: '57014' });
      expect((await sql<{ ok: number }>`select 1 as ok`.execute(db)).rows).toEqual([{ ok: 1 }]);
    } finally {
      await db.destroy();
    }
  });

  it('parses bigint to numbers on its own pools only, and refuses values beyond 2^53 instead of rounding them', async () => {
    const db = await open(testDb.url);
    try {
      const { rows } = await sql<{ max: number; n: number }>`select 9007199254740991::int8 as max, count(*) as n from generations`.execute(db);
      expect(rows[0]).toEqual({ max: Number.MAX_SAFE_INTEGER, n: expect.any(Number) });
      await expect(sql`select 9007199254740993::int8 as v`.execute(db)).rejects.toThrow(RangeError);
      // The pool is still fine, and the process-wide pg types keep node-postgres' default.
      expect((await sql<{ ok: number }>`select 1 as ok`.execute(db)).rows).toEqual([{ ok: 1 }]);
      expect(pgTypes.getTypeParser(pgTypes.builtins.INT8, 'text')('9007199254740993')).toBe('9007199254740993');
    } finally {
      await db.destroy();
    }
  });

  it('survives connections killed by the server, idle or in the middle of a query', async () => {
    const db = await open(testDb.url, { poolSize: 2 });
    const pidOf = async () => (await sql<{ pid: number }>`select pg_backend_pid() as pid`.execute(db)).rows[0].pid;
    try {
      // Idle: the pool's error event (unhandled, it would end the process).
      const idle = await pidOf();
      await withClient(testDb.url, (admin) => admin.query('select pg_terminate_backend($1)', [idle]));
      await until(async () => (warn.mock.calls.length > 0 ? true : undefined), 'the pool to report the lost connection');
      expect(String(warn.mock.calls[0][0])).toMatch(/PostgreSQL connection lost while idle \(.*terminat/);

      // Busy: the query fails with the server's FATAL error. The very next query, issued before the
      // socket's close is even read, must not get that dead connection back from the pool.
      const sleeping = sql`select pg_sleep(30)`.execute(db);
      const next = sleeping.then(
        () => Promise.reject(new Error('pg_sleep(30) should have failed')),
        async (error: Error) => ({ error, pid: await pidOf() }),
      );
      const busy = await until(async () => {
        const { rows } = await withClient(testDb.url, (admin) =>
          admin.query<{ pid: number }>("select pid from pg_stat_activity where datname = $1 and query like 'select pg_sleep(30)%'", [testDb.name]),
        );
        return rows[0]?.pid;
      }, 'the query to run');
      await withClient(testDb.url, (admin) => admin.query('select pg_terminate_backend($1)', [busy]));
      const { error, pid } = await next;
      // The server's FATAL 57P01 reaches callers as a typed 503, the driver's error kept as its cause.
      expect(error).toMatchObject({ code: 'DATABASE_UNAVAILABLE', transient: true });
      expect((error.cause as Error).message).toMatch(/terminat/);
      expect(pid).not.toBe(busy);
      expect((await sql<{ ok: number }>`select 1 as ok`.execute(db)).rows).toEqual([{ ok: 1 }]);
    } finally {
      await db.destroy();
    }
  });

  it('survives a connection reset in the middle of a query (the checked-out client has an error listener)', async () => {
    const proxy = await startTcpProxy({ host: new URL(testDb.url).hostname, port: Number(new URL(testDb.url).port || 5432) });
    const db = await open(proxy.via(testDb.url), { poolSize: 1 });
    try {
      const sleeping = sql`select pg_sleep(30)`.execute(db);
      sleeping.catch(() => undefined);
      await until(async () => {
        const { rows } = await withClient(testDb.url, (admin) =>
          admin.query("select 1 from pg_stat_activity where datname = $1 and query like 'select pg_sleep(30)%'", [testDb.name]),
        );
        return rows.length > 0 ? true : undefined;
      }, 'the query to run');
      proxy.cutAll();
      const lost = await sleeping.then(() => undefined, (error: Error) => error);
      expect(lost).toMatchObject({ code: 'DATABASE_UNAVAILABLE' });
      expect((lost?.cause as Error).message).toMatch(/ECONNRESET|terminated/);
      expect((await sql<{ ok: number }>`select 1 as ok`.execute(db)).rows).toEqual([{ ok: 1 }]);
    } finally {
      await db.destroy();
      await proxy.close();
    }
  });

  it('fails the start with the reason when the server cannot be reached', async () => {
    const closed = createServer();
    await new Promise<void>((r) => closed.listen(0, '127.0.0.1', r));
    const { port } = closed.address() as { port: number };
    await new Promise((r) => closed.close(r));
    await expect(open(`postgres://postgres@127.0.0.1:${port}/nothing`)).rejects.toThrow(/ECONNREFUSED|connect/);
  });
});
