/**
 * The behaviour every dialect of `GenerationsRepository` must show, as one list of cases run
 * against SQLite by generations.repository.spec.ts (unit) and against a real PostgreSQL server by
 * test/integration/generations-repository-postgres.int-spec.ts. Not a spec itself (Jest's testMatch
 * does not pick it up) and not part of the build.
 */
import { HttpStatus } from '@nestjs/common';
import { AppError } from '../common/app-error';
import { emptyTimings, Generation, newQueuedGeneration } from '../common/generation.model';
import { newGenerationId } from '../common/ids';
import type { Database } from './database';
import { encodeCursor } from './generation-cursor';
import { GenerationNotFoundError, GenerationsRepository, InvalidCursorError } from './generations.repository';

export interface RepositoryHarness {
  /** A migrated database without generations, for one test; the test destroys it. */
  open(): Promise<Database>;
}

export const T0 = Date.UTC(2030, 0, 2, 3, 4, 5, 678);

export function generation(overrides: Partial<Generation> = {}): Generation {
  return {
    ...newQueuedGeneration(newGenerationId(), 'gemini-2.5-flash-image', { prompt: 'a lighthouse at dusk', aspectRatio: '1:1', count: 1, paletteSize: 5 }, { createdAt: new Date(T0) }),
    ...overrides,
  };
}

export function succeeded(overrides: Partial<Generation> = {}): Generation {
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

export function describeGenerationsRepository(dialect: string, harness: RepositoryHarness): void {
  describe(`GenerationsRepository on ${dialect}`, () => {
    let db: Database;
    let repo: GenerationsRepository;

    beforeEach(async () => {
      db = await harness.open();
      repo = new GenerationsRepository(db);
    });

    afterEach(async () => {
      await db.destroy();
    });

    describe('create / findById', () => {
      it('round-trips every field: dates, timings, images with palettes, usage', async () => {
        const g = succeeded();
        await repo.create(g);
        const found = await repo.findById(g.id, null);
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
        expect(await repo.findById(g.id, null)).toEqual(g);
      });

      it('returns null for an unknown id and refuses a duplicate id', async () => {
        const g = generation();
        await repo.create(g);
        expect(await repo.findById(newGenerationId(), null)).toBeNull();
        await expect(repo.create({ ...g, prompt: 'other' })).rejects.toThrow(/UNIQUE|constraint/i);
        expect((await repo.findById(g.id, null))?.prompt).toBe(g.prompt);
      });

      it('rejects an invalid date instead of storing garbage', async () => {
        const g = generation({ createdAt: new Date(Number.NaN) });
        await expect(repo.create(g)).rejects.toThrow(TypeError);
        expect(await repo.findById(g.id, null)).toBeNull();
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
        const p1 = await repo.list({ owner: null, limit: 3 });
        const p2 = await repo.list({ owner: null, limit: 3, cursor: p1.nextCursor! });
        const p3 = await repo.list({ owner: null, limit: 3, cursor: p2.nextCursor! });
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
        const p1 = await repo.list({ owner: null, limit: 4 });
        await repo.create(generation({ createdAt: new Date(T0 + 60_000) }));
        await repo.create(generation({ createdAt: new Date(T0) }));
        const p2 = await repo.list({ owner: null, limit: 4, cursor: p1.nextCursor! });
        expect(p1.items.map((g) => g.id)).toEqual(expected.slice(0, 4).map((g) => g.id));
        expect(p2.items.map((g) => g.id)).toEqual(expected.slice(4).map((g) => g.id));
      });

      it('returns no cursor when the last page is exactly full, and empty pages on an empty table', async () => {
        expect(await repo.list({ owner: null, limit: 5 })).toEqual({ items: [], nextCursor: null });
        const expected = await seed();
        const all = await repo.list({ owner: null, limit: expected.length });
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
        const error = await repo.list({ owner: null, limit: 3, cursor }).catch((e: unknown) => e);
        expect(error).toBeInstanceOf(InvalidCursorError);
        expect(error).toBeInstanceOf(AppError);
        expect(error).toMatchObject({ status: HttpStatus.BAD_REQUEST, code: 'INVALID_CURSOR' });
      });

      it('accepts any well-formed cursor, even one pointing between rows', async () => {
        const expected = await seed();
        const page = await repo.list({ owner: null, limit: 10, cursor: encodeCursor({ createdAt: T0 - 500, id: 'z' }) });
        expect(page.items.map((g) => g.id)).toEqual(expected.slice(-2).map((g) => g.id));
      });

      it.each([0, -1, 1.5, 1001, Number.NaN])('refuses limit %p', async (limit) => {
        await expect(repo.list({ owner: null, limit })).rejects.toThrow(RangeError);
      });
    });

    describe('ownership', () => {
      it('finds and lists only the owner\'s generations; no key (null) is an owner of its own', async () => {
        const alice = [0, 1, 2].map((i) => generation({ owner: 'alice', createdAt: new Date(T0 + i) }));
        const bob = [0, 1].map((i) => generation({ owner: 'bob', createdAt: new Date(T0 + 10 + i) }));
        const legacy = generation({ owner: null, createdAt: new Date(T0 + 20) });
        for (const g of [...alice, ...bob, legacy]) await repo.create(g);

        expect(await repo.findById(alice[0].id, 'alice')).toEqual(alice[0]);
        expect(await repo.findById(alice[0].id, 'bob')).toBeNull();
        expect(await repo.findById(alice[0].id, null)).toBeNull();
        expect(await repo.findById(legacy.id, 'alice')).toBeNull();
        expect(await repo.findById(legacy.id, null)).toEqual(legacy);

        const ids = async (owner: string | null) => {
          const out: string[] = [];
          let cursor: string | undefined;
          do {
            const page = await repo.list({ owner, limit: 2, cursor });
            out.push(...page.items.map((g) => g.id));
            cursor = page.nextCursor ?? undefined;
          } while (cursor);
          return out;
        };
        expect(await ids('alice')).toEqual(alice.map((g) => g.id).reverse());
        expect(await ids('bob')).toEqual(bob.map((g) => g.id).reverse());
        expect(await ids(null)).toEqual([legacy.id]);
        expect(await ids('carol')).toEqual([]);
      });

      it('a cursor taken from another owner\'s page reveals nothing of theirs', async () => {
        const mine = generation({ owner: 'alice', createdAt: new Date(T0) });
        const theirs = [1, 2, 3].map((i) => generation({ owner: 'bob', createdAt: new Date(T0 + i) }));
        for (const g of [mine, ...theirs]) await repo.create(g);
        const bobsPage = await repo.list({ owner: 'bob', limit: 1 });
        const page = await repo.list({ owner: 'alice', limit: 10, cursor: bobsPage.nextCursor! });
        expect(page.items.map((g) => g.id)).toEqual([mine.id]);
      });
    });

    describe('updateIfNotFinal: the patch', () => {
      it('applies the patch, returns the record and leaves the other fields alone', async () => {
        const g = generation();
        await repo.create(g);
        const startedAt = new Date(T0 + 10);
        const updated = await repo.updateIfNotFinal(g.id, {
          status: 'running',
          stage: 'gemini',
          startedAt,
          timings: { ...emptyTimings(), queueMs: 10 },
        });
        const expected = { ...g, status: 'running', stage: 'gemini', startedAt, timings: { ...emptyTimings(), queueMs: 10 } };
        expect(updated).toEqual(expected);
        expect(await repo.findById(g.id, null)).toEqual(expected);
      });

      it('sets and clears error, usage, images and dates', async () => {
        const g = succeeded({ status: 'running', stage: 'palette' });
        await repo.create(g);
        const failed = await repo.updateIfNotFinal(g.id, {
          images: [],
          usage: { inputTokens: 1, outputTokens: 2 },
          error: { code: 'STORAGE_ERROR', message: 'disk full' },
        });
        expect(failed).toMatchObject({ images: [], usage: { inputTokens: 1, outputTokens: 2 }, error: { code: 'STORAGE_ERROR' } });
        const cleared = await repo.updateIfNotFinal(g.id, { error: null, startedAt: null, completedAt: null });
        expect(cleared).toMatchObject({ error: null, startedAt: null, completedAt: null, status: 'running' });
      });

      it('throws GenerationNotFoundError (404) for an unknown id', async () => {
        const id = newGenerationId();
        const error = await repo.updateIfNotFinal(id, { stage: 'upload' }).catch((e: unknown) => e);
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
        expect(await repo.findById(g.id, null)).toEqual(g);
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
        expect(await repo.findById(g.id, null)).toEqual(winner);
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
        expect(await repo.findById(queued.id, null)).toEqual({
          ...queued,
          status: 'failed',
          completedAt: at,
          error: { code: 'INTERRUPTED', message: 'stopped' },
        });
        expect(await repo.findById(running.id, null)).toMatchObject({ status: 'failed', stage: 'upload', completedAt: at });
        expect(await repo.findById(done.id, null)).toEqual(done);
        expect(await repo.findById(canceled.id, null)).toEqual(canceled);
        expect(await repo.failUnfinished({ code: 'INTERRUPTED', message: 'again' }, at)).toEqual([]);
      });
    });

    describe('one job per image', () => {
      it('admits a client only below its number of active generations, decided with the insert', async () => {
        const a = [generation(), generation()];
        expect(await repo.createIfClientBelow(a[0], 'key:alice', 2)).toBe(true);
        expect(await repo.createIfClientBelow(a[1], 'key:alice', 2)).toBe(true);
        expect(await repo.createIfClientBelow(generation(), 'key:alice', 2)).toBe(false);
        expect(await repo.createIfClientBelow(generation(), 'key:bob', 2)).toBe(true);
        expect(await repo.findById(a[0].id, null)).toEqual(a[0]);
        // A finished generation no longer counts.
        await repo.updateIfNotFinal(a[0].id, { status: 'succeeded', stage: 'done' });
        expect(await repo.createIfClientBelow(generation(), 'key:alice', 2)).toBe(true);
      });

      it('deleteQueued removes a generation only while it is queued', async () => {
        const q = generation();
        const r = generation({ status: 'running' });
        for (const g of [q, r]) await repo.create(g);
        await repo.deleteQueued(q.id);
        await repo.deleteQueued(r.id);
        expect(await repo.findById(q.id, null)).toBeNull();
        expect(await repo.findById(r.id, null)).not.toBeNull();
      });

      it('markRunning starts a queued generation once, with its queue time; stages only move forward', async () => {
        const g = generation();
        await repo.create(g);
        const started = await repo.markRunning(g, new Date(T0 + 250));
        expect(started).toMatchObject({ status: 'running', stage: 'gemini', startedAt: new Date(T0 + 250), timings: { queueMs: 250 } });
        expect(await repo.markRunning(g, new Date(T0 + 500))).toBeNull();
        expect(await repo.advanceStage(g.id, 'upload')).toMatchObject({ stage: 'upload' });
        expect(await repo.advanceStage(g.id, 'gemini')).toBeNull();
        expect(await repo.advanceStage(g.id, 'upload')).toBeNull();
        expect(await repo.advanceStage(g.id, 'palette')).toMatchObject({ stage: 'palette' });
        await repo.updateIfNotFinal(g.id, { status: 'canceled' });
        expect(await repo.advanceStage(g.id, 'done')).toBeNull();
        expect((await repo.findById(g.id, null))?.stage).toBe('palette');
      });

      it('records each image once: the first record stands, and reads back exactly', async () => {
        const g = succeeded({ status: 'running', stage: 'palette' });
        await repo.create(g);
        const ok = { index: 1, image: g.images[1], error: null, ms: { gemini: 3000, upload: 12, palette: 40 }, usage: { inputTokens: 6, outputTokens: 1290 } };
        const failed = { index: 0, image: null, error: { code: 'GEMINI_BLOCKED' as const, message: 'blocked' }, ms: { gemini: 800, upload: 0, palette: 0 }, usage: { inputTokens: 6, outputTokens: 0 } };
        expect(await repo.recordImage(g.id, ok)).toEqual(ok);
        expect(await repo.recordImage(g.id, failed)).toEqual(failed);
        // A late second record of image 1 (a re-run after a takeover) changes nothing.
        expect(await repo.recordImage(g.id, { ...failed, index: 1 })).toEqual(ok);
        expect(await repo.imagesOf(g.id)).toEqual([failed, ok]);
        expect(await repo.imagesOf(generation().id)).toEqual([]);
      });

      it('lists unfinished generations created before a time, oldest first', async () => {
        const old = generation({ createdAt: new Date(T0 - 2000) });
        const older = generation({ createdAt: new Date(T0 - 3000), status: 'running' });
        const recent = generation({ createdAt: new Date(T0) });
        const done = succeeded({ createdAt: new Date(T0 - 5000) });
        for (const x of [old, older, recent, done]) await repo.create(x);
        expect((await repo.unfinishedBefore(new Date(T0 - 1000), 10)).map((x) => x.id)).toEqual([older.id, old.id]);
        expect((await repo.unfinishedBefore(new Date(T0 - 1000), 1)).map((x) => x.id)).toEqual([older.id]);
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
}
