import { HttpStatus } from '@nestjs/common';
import { CompiledQuery, Kysely, LogEvent } from 'kysely';
import { AppError } from '../common/app-error';
import { emptyTimings, Generation, newQueuedGeneration } from '../common/generation.model';
import { newGenerationId } from '../common/ids';
import { createDatabase, Database, migrateToLatest } from './database';
import type { DatabaseSchema } from './database.schema';
import { encodeCursor } from './generation-cursor';
import { GenerationNotFoundError, GenerationsRepository, InvalidCursorError } from './generations.repository';
import { NodeSqliteDialect, openSqlite } from './node-sqlite.dialect';

const T0 = Date.UTC(2030, 0, 2, 3, 4, 5, 678);

function generation(overrides: Partial<Generation> = {}): Generation {
  return {
    ...newQueuedGeneration(newGenerationId(), 'gemini-2.5-flash-image', { prompt: 'a lighthouse at dusk', aspectRatio: '1:1', count: 1, paletteSize: 5 }, new Date(T0)),
    ...overrides,
  };
}

function succeeded(overrides: Partial<Generation> = {}): Generation {
  return generation({
    status: 'succeeded',
    stage: 'done',
    prompt: 'ünïcödé "quotes" \' and emoji 🎨',
    aspectRatio: '16:9',
    count: 2,
    paletteSize: 3,
    startedAt: new Date(T0 + 15),
    completedAt: new Date(T0 + 4321),
    timings: { queueMs: 15, geminiMs: 3000, uploadMs: 120, paletteMs: 45, totalMs: 4321 },
    images: [0, 1].map((index) => ({
      index,
      key: `generations/x/${index}.png`,
      mimeType: 'image/png',
      width: 1344,
      height: 768,
      bytes: 123_456 + index,
      palette: [
        { hex: '#d43434', rgb: [212, 52, 52] as [number, number, number], proportion: 0.5 },
        { hex: '#0a0b0c', rgb: [10, 11, 12] as [number, number, number], proportion: 0.3 },
        { hex: '#ffffff', rgb: [255, 255, 255] as [number, number, number], proportion: 0.2 },
      ],
    })),
    usage: { inputTokens: 12, outputTokens: 2580 },
    ...overrides,
  });
}

describe('GenerationsRepository', () => {
  let db: Database;
  let repo: GenerationsRepository;

  beforeEach(async () => {
    db = await createDatabase(':memory:');
    repo = new GenerationsRepository(db);
  });

  afterEach(async () => {
    await db.destroy();
  });

  describe('create / findById', () => {
    it('round-trips every field: dates, timings, images with palettes, usage', async () => {
      const g = succeeded();
      await repo.create(g);
      const found = await repo.findById(g.id);
      expect(found).toEqual(g);
      expect(found?.createdAt).toBeInstanceOf(Date);
      expect(found?.createdAt.getTime()).toBe(T0);
    });

    it('round-trips a failed generation with its error and null dates', async () => {
      const g = generation({
        status: 'failed',
        stage: 'gemini',
        error: { code: 'GEMINI_BLOCKED', message: 'Blocked: SAFETY' },
        completedAt: new Date(T0 + 1),
      });
      await repo.create(g);
      expect(await repo.findById(g.id)).toEqual(g);
    });

    it('returns null for an unknown id and refuses a duplicate id', async () => {
      const g = generation();
      await repo.create(g);
      expect(await repo.findById(newGenerationId())).toBeNull();
      await expect(repo.create({ ...g, prompt: 'other' })).rejects.toThrow(/UNIQUE|constraint/i);
      expect((await repo.findById(g.id))?.prompt).toBe(g.prompt);
    });

    it('rejects an invalid date instead of storing garbage', async () => {
      const g = generation({ createdAt: new Date(Number.NaN) });
      await expect(repo.create(g)).rejects.toThrow(TypeError);
      expect(await repo.findById(g.id)).toBeNull();
    });
  });

  describe('list', () => {
    // Eight generations, five of them sharing one timestamp, so paging must break ties by id.
    async function seed(): Promise<Generation[]> {
      const all = [
        ...Array.from({ length: 5 }, () => generation({ createdAt: new Date(T0) })),
        generation({ createdAt: new Date(T0 - 1000) }),
        generation({ createdAt: new Date(T0 + 1000) }),
        generation({ createdAt: new Date(T0 - 2000) }),
      ];
      // Inserted out of order, so the result order must come from the query.
      for (const g of [...all].reverse()) await repo.create(g);
      return all.sort((a, b) => b.createdAt.getTime() - a.createdAt.getTime() || (a.id < b.id ? 1 : -1));
    }

    it('pages newest first through 3 pages with equal timestamps, no repeats, no gaps', async () => {
      const expected = await seed();
      const p1 = await repo.list({ limit: 3 });
      const p2 = await repo.list({ limit: 3, cursor: p1.nextCursor! });
      const p3 = await repo.list({ limit: 3, cursor: p2.nextCursor! });
      expect([p1, p2, p3].map((p) => p.items.length)).toEqual([3, 3, 2]);
      expect(p1.nextCursor).toEqual(expect.any(String));
      expect(p2.nextCursor).toEqual(expect.any(String));
      expect(p3.nextCursor).toBeNull();
      const ids = [...p1.items, ...p2.items, ...p3.items].map((g) => g.id);
      expect(ids).toEqual(expected.map((g) => g.id));
      // The middle page starts and ends inside the run of equal timestamps.
      expect(p2.items.every((g) => g.createdAt.getTime() === T0)).toBe(true);
    });

    it('keeps later pages stable when newer generations arrive between requests', async () => {
      const expected = await seed();
      const p1 = await repo.list({ limit: 4 });
      await repo.create(generation({ createdAt: new Date(T0 + 60_000) }));
      await repo.create(generation({ createdAt: new Date(T0) }));
      const p2 = await repo.list({ limit: 4, cursor: p1.nextCursor! });
      expect(p1.items.map((g) => g.id)).toEqual(expected.slice(0, 4).map((g) => g.id));
      expect(p2.items.map((g) => g.id)).toEqual(expected.slice(4).map((g) => g.id));
    });

    it('returns no cursor when the last page is exactly full, and empty pages on an empty table', async () => {
      expect(await repo.list({ limit: 5 })).toEqual({ items: [], nextCursor: null });
      const expected = await seed();
      const all = await repo.list({ limit: expected.length });
      expect(all.items).toHaveLength(expected.length);
      expect(all.nextCursor).toBeNull();
    });

    it.each([
      ['not base64url', '!!!'],
      ['empty', ''],
      ['base64url of junk', Buffer.from('hello').toString('base64url')],
      ['a negative time', Buffer.from('-5:abc').toString('base64url')],
      ['no id', Buffer.from('1700000000000:').toString('base64url')],
      ['non-canonical padding', `${Buffer.from('1:a').toString('base64url')}=`],
      ['too long', 'A'.repeat(1000)],
      ['SQL in the id', Buffer.from("1:x' or 1=1 --").toString('base64url')],
    ])('refuses an invalid cursor (%s) with a 400 InvalidCursorError', async (_name, cursor) => {
      await seed();
      const error = await repo.list({ limit: 3, cursor }).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(InvalidCursorError);
      expect(error).toBeInstanceOf(AppError);
      expect(error).toMatchObject({ status: HttpStatus.BAD_REQUEST, code: 'INVALID_CURSOR' });
    });

    it('accepts any well-formed cursor, even one pointing between rows', async () => {
      const expected = await seed();
      const page = await repo.list({ limit: 10, cursor: encodeCursor({ createdAt: T0 - 500, id: 'z' }) });
      expect(page.items.map((g) => g.id)).toEqual(expected.slice(-2).map((g) => g.id));
    });

    it.each([0, -1, 1.5, 1001, Number.NaN])('refuses limit %p', async (limit) => {
      await expect(repo.list({ limit })).rejects.toThrow(RangeError);
    });
  });

  describe('update', () => {
    it('applies the patch, returns the record and leaves the other fields alone', async () => {
      const g = generation();
      await repo.create(g);
      const startedAt = new Date(T0 + 10);
      const updated = await repo.update(g.id, {
        status: 'running',
        stage: 'gemini',
        startedAt,
        timings: { ...emptyTimings(), queueMs: 10 },
      });
      const expected = { ...g, status: 'running', stage: 'gemini', startedAt, timings: { ...emptyTimings(), queueMs: 10 } };
      expect(updated).toEqual(expected);
      expect(await repo.findById(g.id)).toEqual(expected);
    });

    it('sets and clears error, usage, images and dates', async () => {
      const g = succeeded();
      await repo.create(g);
      const failed = await repo.update(g.id, {
        status: 'failed',
        images: [],
        usage: { inputTokens: 1, outputTokens: 2 },
        error: { code: 'STORAGE_ERROR', message: 'disk full' },
      });
      expect(failed).toMatchObject({ images: [], usage: { inputTokens: 1, outputTokens: 2 }, error: { code: 'STORAGE_ERROR' } });
      const cleared = await repo.update(g.id, { error: null, startedAt: null, completedAt: null });
      expect(cleared).toMatchObject({ error: null, startedAt: null, completedAt: null, status: 'failed' });
    });

    it('throws GenerationNotFoundError (404) for an unknown id', async () => {
      const id = newGenerationId();
      const error = await repo.update(id, { stage: 'upload' }).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(GenerationNotFoundError);
      expect(error).toMatchObject({ status: HttpStatus.NOT_FOUND, id });
    });
  });

  describe('updateIfNotFinal', () => {
    it('updates queued and running generations', async () => {
      const queued = generation();
      const running = generation({ status: 'running', stage: 'gemini' });
      await repo.create(queued);
      await repo.create(running);
      expect(await repo.updateIfNotFinal(queued.id, { status: 'running' })).toMatchObject({ status: 'running' });
      expect(await repo.updateIfNotFinal(running.id, { stage: 'upload' })).toMatchObject({ status: 'running', stage: 'upload' });
    });

    it.each(['succeeded', 'failed', 'canceled'] as const)('returns null and changes nothing when %s', async (status) => {
      const g = status === 'succeeded' ? succeeded() : generation({ status, completedAt: new Date(T0 + 5) });
      await repo.create(g);
      expect(await repo.updateIfNotFinal(g.id, { status: 'canceled', error: { code: 'CANCELED', message: 'x' } })).toBeNull();
      expect(await repo.findById(g.id)).toEqual(g);
    });

    it('lets exactly one of two racing final writes win', async () => {
      const g = generation({ status: 'running', stage: 'palette' });
      await repo.create(g);
      const [cancel, finish] = await Promise.all([
        repo.updateIfNotFinal(g.id, { status: 'canceled', error: { code: 'CANCELED', message: 'by user' } }),
        repo.updateIfNotFinal(g.id, { status: 'succeeded', stage: 'done' }),
      ]);
      expect([cancel, finish].filter((r) => r !== null)).toHaveLength(1);
      const winner = (cancel ?? finish)!;
      expect(await repo.findById(g.id)).toEqual(winner);
    });

    it('throws GenerationNotFoundError for an unknown id', async () => {
      await expect(repo.updateIfNotFinal(newGenerationId(), { status: 'canceled' })).rejects.toBeInstanceOf(
        GenerationNotFoundError,
      );
    });
  });

  describe('failUnfinished', () => {
    it('fails every queued and running generation, keeps their stage, and leaves final ones alone', async () => {
      const queued = generation();
      const running = generation({ status: 'running', stage: 'upload', startedAt: new Date(T0 + 1) });
      const done = succeeded();
      const canceled = generation({ status: 'canceled', error: { code: 'CANCELED', message: 'c' }, completedAt: new Date(T0 + 2) });
      for (const g of [queued, running, done, canceled]) await repo.create(g);

      const at = new Date(T0 + 99_000);
      const failed = await repo.failUnfinished({ code: 'INTERRUPTED', message: 'stopped' }, at);

      expect([...failed].sort((a, b) => a.id.localeCompare(b.id))).toEqual(
        [queued, running].map((g) => ({ id: g.id, createdAt: g.createdAt })).sort((a, b) => a.id.localeCompare(b.id)),
      );
      expect(await repo.findById(queued.id)).toEqual({
        ...queued,
        status: 'failed',
        completedAt: at,
        error: { code: 'INTERRUPTED', message: 'stopped' },
      });
      expect(await repo.findById(running.id)).toMatchObject({ status: 'failed', stage: 'upload', completedAt: at });
      expect(await repo.findById(done.id)).toEqual(done);
      expect(await repo.findById(canceled.id)).toEqual(canceled);
      expect(await repo.failUnfinished({ code: 'INTERRUPTED', message: 'again' }, at)).toEqual([]);
    });
  });

  it('counts by status with every status present', async () => {
    expect(await repo.countByStatus()).toEqual({ queued: 0, running: 0, succeeded: 0, failed: 0, canceled: 0 });
    for (const g of [generation(), generation(), succeeded(), generation({ status: 'running' })]) await repo.create(g);
    expect(await repo.countByStatus()).toEqual({ queued: 2, running: 1, succeeded: 1, failed: 0, canceled: 0 });
  });

  it('pings while open and rejects once the database is closed', async () => {
    await expect(repo.ping()).resolves.toBeUndefined();
    await db.destroy();
    await expect(repo.ping()).rejects.toThrow();
  });
});

describe('GenerationsRepository query plans', () => {
  it('serves history pages from the (created_at, id) index without sorting', async () => {
    const sqlite = openSqlite(':memory:');
    const queries: CompiledQuery[] = [];
    const db = new Kysely<DatabaseSchema>({
      dialect: new NodeSqliteDialect(sqlite),
      log: (event: LogEvent) => {
        if (event.level === 'query') queries.push(event.query);
      },
    });
    try {
      await migrateToLatest(db);
      const repo = new GenerationsRepository(db);
      for (let i = 0; i < 50; i++) await repo.create(generation({ createdAt: new Date(T0 + i) }));
      sqlite.exec('ANALYZE');
      const first = await repo.list({ limit: 10 });
      await repo.list({ limit: 10, cursor: first.nextCursor! });
      const [q1, q2] = queries.slice(-2);
      for (const q of [q1, q2]) {
        const plan = sqlite
          .prepare(`EXPLAIN QUERY PLAN ${q.sql}`)
          .all(...(q.parameters as (string | number)[]))
          .map((r) => String(r.detail))
          .join('\n');
        expect(plan).toContain('generations_created_at_id_idx');
        expect(plan).not.toMatch(/TEMP B-TREE/);
      }
    } finally {
      await db.destroy();
    }
  });
});
