/**
 * The behaviour every dialect of the reference library and the search index must show, as one list
 * of cases run against SQLite by search.repository.spec.ts (unit) and against a real PostgreSQL
 * server by test/integration/search-postgres.int-spec.ts. Not a spec itself and not part of the build.
 */
import { Migrator } from 'kysely/migration';
import type { Generation, PaletteColor } from '../common/generation.model';
import { newGenerationId } from '../common/ids';
import type { Reference } from '../common/reference.model';
import { parseHex } from '../search/color-space';
import { SearchService } from '../search/search.service';
import { parseTextQuery } from '../search/text-query';
import { AppMetrics } from '../telemetry/app-metrics';
import type { Database } from './database';
import { generation, T0 } from './generations.repository.cases';
import { GenerationsRepository } from './generations.repository';
import { migrationProvider } from './migrations';
import { ReferencesRepository, UploadExpiredError } from './references.repository';
import { SearchRepository } from './search.repository';
import { StorageSweepRepository } from './storage-sweep.repository';

export interface SearchHarness {
  /** A migrated, empty database for one test; the test destroys it. */
  open(): Promise<Database>;
  /** An empty database with no migrations applied, for the backfill case; the test destroys it. */
  openUnmigrated(): Promise<Database>;
}

/** `[hex, share]` pairs → a palette (shares as given). */
export function palette(...colors: [string, number][]): PaletteColor[] {
  return colors.map(([hex, proportion]) => ({ hex, rgb: [...parseHex(hex)!] as [number, number, number], proportion }));
}

export function reference(overrides: Partial<Reference> = {}): Reference {
  const id = overrides.id ?? newGenerationId();
  return {
    id,
    owner: null,
    title: 'a reference',
    tags: [],
    storageKey: `references/2030/01/02/${id}.png`,
    mimeType: 'image/png',
    width: 64,
    height: 48,
    bytes: 1234,
    palette: palette(['#808080', 1]),
    createdAt: new Date(T0),
    ...overrides,
  };
}

/** A generation that succeeded with one image per palette. */
export function succeededWith(prompt: string, palettes: PaletteColor[][], overrides: Partial<Generation> = {}): Generation {
  return generation({
    prompt,
    status: 'succeeded',
    stage: 'done',
    count: palettes.length,
    completedAt: new Date(T0 + 1000),
    images: palettes.map((p, index) => ({ index, key: `images/x/${index}.png`, mimeType: 'image/png', width: 8, height: 8, bytes: 10, palette: p })),
    ...overrides,
  });
}

const RED = '#d43434';
const BLUE = '#2a4d9b';
const GREEN = '#2e8b3c';
const YELLOW = '#f2d024';

export function describeReferencesAndSearch(dialect: string, harness: SearchHarness): void {
  describe(`References and search on ${dialect}`, () => {
    let db: Database;
    let generations: GenerationsRepository;
    let references: ReferencesRepository;
    let index: SearchRepository;
    let search: SearchService;

    beforeEach(async () => {
      db = await harness.open();
      generations = new GenerationsRepository(db);
      references = new ReferencesRepository(db);
      index = new SearchRepository(db);
      search = new SearchService(index, generations, references, new AppMetrics());
    });

    afterEach(async () => {
      await db.destroy();
    });

    const ids = (hits: { id: string }[]) => hits.map((h) => h.id);

    describe('ReferencesRepository', () => {
      it('round-trips a reference, hides it from other owners, and finds several by id in the order asked', async () => {
        const a = reference({ owner: 'alice', title: 'ünïcödé title', tags: ['warm', 'studio'], palette: palette([RED, 0.7], [BLUE, 0.3]) });
        const b = reference({ owner: 'alice', title: null });
        const c = reference({ owner: 'bob' });
        for (const r of [a, b, c]) await references.create(r);
        expect(await references.findById(a.id, 'alice')).toEqual(a);
        expect(await references.findById(a.id, 'bob')).toBeNull();
        expect(await references.findById(a.id, null)).toBeNull();
        expect((await references.findOwned([b.id, c.id, a.id, b.id, newGenerationId()], 'alice')).map((r) => r.id)).toEqual([b.id, a.id]);
        expect(await references.findOwned([], 'alice')).toEqual([]);
      });

      it('lists newest first with a keyset cursor, per owner', async () => {
        const mine = Array.from({ length: 5 }, (_, i) => reference({ owner: 'alice', createdAt: new Date(T0 + (i % 3) * 1000) }));
        for (const r of [...mine].reverse()) await references.create(r);
        await references.create(reference({ owner: 'bob' }));
        const expected = [...mine].sort((x, y) => y.createdAt.getTime() - x.createdAt.getTime() || (x.id < y.id ? 1 : -1)).map((r) => r.id);
        const p1 = await references.list({ owner: 'alice', limit: 2 });
        const p2 = await references.list({ owner: 'alice', limit: 2, cursor: p1.nextCursor! });
        const p3 = await references.list({ owner: 'alice', limit: 2, cursor: p2.nextCursor! });
        expect([...p1.items, ...p2.items, ...p3.items].map((r) => r.id)).toEqual(expected);
        expect(p3.nextCursor).toBeNull();
        expect((await references.list({ owner: null, limit: 10 })).items).toEqual([]);
      });

      it('deletes record and search entry together and schedules the image for the sweep; another owner deletes nothing', async () => {
        const r = reference({ owner: 'alice', title: 'lighthouse', palette: palette([RED, 1]) });
        await references.create(r);
        expect(await references.delete(r.id, 'bob')).toBeNull();
        expect(await references.findById(r.id, 'alice')).toEqual(r);

        const deleted = await references.delete(r.id, 'alice', new Date(T0));
        expect(deleted).toEqual(r);
        expect(await references.findById(r.id, 'alice')).toBeNull();
        expect(await references.delete(r.id, 'alice')).toBeNull();
        expect(await index.item('reference', r.id, 'alice')).toBeNull();
        expect(await index.text(parseTextQuery('lighthouse'), { owner: 'alice', kinds: ['reference'], limit: 10 })).toEqual([]);
        expect(await db.selectFrom('search_colors').selectAll().execute()).toEqual([]);
        expect(await db.selectFrom('search_palettes').selectAll().execute()).toEqual([]);
        const sweep = new StorageSweepRepository(db);
        expect(await sweep.due(new Date(T0), 10)).toEqual([{ key: r.storageKey, dueAt: new Date(T0), attempts: 0, reason: 'deleted reference' }]);
      });

      it("records an upload only while its pending sweep entry is not due; once due it is the sweeper's", async () => {
        const sweep = new StorageSweepRepository(db);
        const now = Date.now();
        const fresh = reference();
        await sweep.schedule(fresh.storageKey, new Date(now + 3_600_000), 'upload');
        await references.create(fresh, { pendingKey: fresh.storageKey });
        expect(await sweep.due(new Date(now + 7_200_000), 10)).toEqual([]);
        expect(await references.findById(fresh.id, null)).toEqual(fresh);

        const late = reference();
        await sweep.schedule(late.storageKey, new Date(now - 1), 'upload');
        await expect(references.create(late, { pendingKey: late.storageKey })).rejects.toBeInstanceOf(UploadExpiredError);
        expect(await references.findById(late.id, null)).toBeNull();
        expect(await index.item('reference', late.id, null)).toBeNull();
        expect((await sweep.due(new Date(now), 10)).map((e) => e.key)).toEqual([late.storageKey]);
      });

      it('the sweep list: due entries oldest first, failures pushed back with a count, done entries gone', async () => {
        const sweep = new StorageSweepRepository(db);
        await sweep.schedule('references/b.png', new Date(T0 + 2), 'deleted reference');
        await sweep.schedule('references/a.png', new Date(T0 + 1), 'deleted reference');
        await sweep.schedule('references/later.png', new Date(T0 + 10_000), 'upload');
        expect((await sweep.due(new Date(T0 + 5), 10)).map((e) => e.key)).toEqual(['references/a.png', 'references/b.png']);
        await sweep.failed('references/a.png', new Date(T0 + 20_000));
        await sweep.done('references/b.png');
        expect(await sweep.due(new Date(T0 + 5), 10)).toEqual([]);
        expect(await sweep.due(new Date(T0 + 20_000), 10)).toEqual([
          { key: 'references/later.png', dueAt: new Date(T0 + 10_000), attempts: 0, reason: 'upload' },
          { key: 'references/a.png', dueAt: new Date(T0 + 20_000), attempts: 1, reason: 'deleted reference' },
        ]);
      });
    });

    describe('text', () => {
      async function seed() {
        const g = {
          apple: succeededWith('a red apple on a blue table', [palette([RED, 1])], { owner: 'alice' }),
          apples: generation({ owner: 'alice', prompt: 'apples apples apples', createdAt: new Date(T0 - 10) }),
          lighthouse: generation({ owner: 'alice', prompt: 'a lighthouse at dusk, stormy sea' }),
          bobs: generation({ owner: 'bob', prompt: 'an apple for bob' }),
        };
        for (const x of Object.values(g)) await generations.create(x);
        const ref = reference({ owner: 'alice', title: 'Orchard study', tags: ['apple', 'green'] });
        await references.create(ref);
        return { ...g, ref };
      }
      const text = (q: string, kinds: ('generation' | 'reference')[] = ['generation', 'reference'], owner: string | null = 'alice') =>
        search.search({ owner, q, kinds, limit: 20 }).then((r) => r.hits);

      it("finds prompts, titles and tags, stemmed and case-blind, ranked, only the owner's", async () => {
        const s = await seed();
        const hits = await text('APPLE');
        expect(new Set(ids(hits))).toEqual(new Set([s.apple.id, s.apples.id, s.ref.id]));
        // Three occurrences in a short prompt rank above one.
        expect(ids(hits).indexOf(s.apples.id)).toBeLessThan(ids(hits).indexOf(s.apple.id));
        // Ranks rise with the order; equal text scores share a rank.
        const ranks = hits.map((h) => h.text!.rank);
        expect(ranks[0]).toBe(1);
        expect([...ranks].sort((a, b) => a - b)).toEqual(ranks);
        expect(hits.every((h) => h.color === null)).toBe(true);
        expect(hits.find((h) => h.id === s.ref.id)?.item).toEqual({ kind: 'reference', value: s.ref });
        expect(hits.find((h) => h.id === s.apple.id)?.item).toEqual({ kind: 'generation', value: s.apple });
        expect(ids(await text('orchard'))).toEqual([s.ref.id]);
        expect(ids(await text('apple', ['generation'], 'bob'))).toEqual([s.bobs.id]);
      });

      it('reads websearch syntax the same way: AND, or, -exclusion, "phrases", stop words', async () => {
        const s = await seed();
        expect(ids(await text('red apple'))).toEqual([s.apple.id]);
        expect(new Set(ids(await text('lighthouse or orchard')))).toEqual(new Set([s.lighthouse.id, s.ref.id]));
        expect(new Set(ids(await text('apple -red')))).toEqual(new Set([s.apples.id, s.ref.id]));
        expect(ids(await text('"blue table"'))).toEqual([s.apple.id]);
        expect(ids(await text('"table blue"'))).toEqual([]);
        expect(ids(await text('"lighthouse at dusk"'))).toEqual([s.lighthouse.id]);
        expect(ids(await text('the lighthouse'))).toEqual([s.lighthouse.id]);
        expect(await text('the of and')).toEqual([]);
        expect(await text('zebra')).toEqual([]);
        expect(ids(await text('apple', ['reference']))).toEqual([s.ref.id]);
        // Punctuation and query syntax characters are only separators.
        expect(ids(await text('stormy-sea* AND( "'))).toEqual([s.lighthouse.id]);
      });

      it('indexes a prompt when the generation is admitted, and forgets it when deleted', async () => {
        const g = generation({ owner: 'alice', prompt: 'a quokka selfie' });
        expect(await generations.createIfClientBelow(g, 'key:alice', 5)).toBe(true);
        expect(ids(await text('quokka'))).toEqual([g.id]);
        const refused = generation({ owner: 'alice', prompt: 'another quokka' });
        expect(await generations.createIfClientBelow(refused, 'key:alice', 1)).toBe(false);
        expect(ids(await text('quokka'))).toEqual([g.id]);
        await generations.deleteQueued(g.id);
        expect(await text('quokka')).toEqual([]);

        const kept = succeededWith('a quokka again', [palette([GREEN, 1])], { owner: 'alice' });
        await generations.create(kept);
        expect(await generations.delete(kept.id, 'bob')).toBeNull();
        expect((await generations.delete(kept.id, 'alice'))?.id).toBe(kept.id);
        expect(await text('quokka')).toEqual([]);
        expect(await db.selectFrom('search_colors').selectAll().execute()).toEqual([]);
        expect(await db.selectFrom('search_palettes').selectAll().execute()).toEqual([]);
      });
    });

    describe('colour', () => {
      const color = (hexes: [string, number][], opts: { owner?: string | null; kinds?: ('generation' | 'reference')[]; q?: string; limit?: number } = {}) =>
        search
          .search({
            owner: opts.owner === undefined ? 'alice' : opts.owner,
            colors: hexes.map(([hex, weight]) => ({ rgb: parseHex(hex)!, weight })),
            q: opts.q,
            kinds: opts.kinds ?? ['generation', 'reference'],
            limit: opts.limit ?? 20,
          })
          .then((r) => r.hits);

      it('indexes a palette when the generation succeeds (not before) and ranks by distance weighted by share', async () => {
        const queued = generation({ owner: 'alice', prompt: 'will be red' });
        await generations.create(queued);
        expect(await color([[RED, 1]])).toEqual([]);
        const done = await generations.updateIfNotFinal(queued.id, {
          status: 'succeeded',
          stage: 'done',
          images: [{ index: 0, key: 'k/0.png', mimeType: 'image/png', width: 1, height: 1, bytes: 1, palette: palette([RED, 0.9], [YELLOW, 0.1]) }],
        });
        expect(done?.status).toBe('succeeded');
        const mostlyBlue = succeededWith('mostly blue', [palette([BLUE, 0.8], [RED, 0.2])], { owner: 'alice' });
        const half = reference({ owner: 'alice', palette: palette([RED, 0.5], [BLUE, 0.5]) });
        await generations.create(mostlyBlue);
        await references.create(half);

        const hits = await color([[RED, 1]]);
        expect(ids(hits)).toEqual([queued.id, half.id, mostlyBlue.id]);
        const distances = hits.map((h) => h.color!.distance);
        expect(distances[0]).toBeLessThan(distances[1]);
        expect(distances[1]).toBeLessThan(distances[2]);
        expect(hits.every((h) => h.text === null)).toBe(true);
        // Weights ask for proportions: half red, half blue is the reference exactly.
        const mixed = await color([[RED, 50], [BLUE, 50]]);
        expect(mixed[0].id).toBe(half.id);
        // (Colours are stored to 4 decimals of OKLab: 0.01 ΔE_OK.)
        expect(mixed[0].color!.distance).toBeLessThan(0.05);
        expect(ids(await color([[BLUE, 1]], { kinds: ['reference'] }))).toEqual([half.id]);
        // A failed or canceled generation has no palette to find.
        expect(await color([[RED, 1]], { owner: 'bob' })).toEqual([]);
      });

      it("matches a generation by its best image, and says which", async () => {
        const g = succeededWith('two images', [palette([BLUE, 1]), palette([RED, 1])], { owner: 'alice' });
        await generations.create(g);
        const [hit] = await color([[RED, 1]]);
        expect(hit).toMatchObject({ id: g.id, color: { imageIndex: 1 } });
        expect(hit.color!.distance).toBeLessThan(0.05);
      });

      it("another owner's colours never crowd out the caller's nearest ones, however many", async () => {
        const crowd = Array.from({ length: 150 }, () => succeededWith('crowd', [palette([RED, 1])], { owner: 'mallory' }));
        for (let i = 0; i < crowd.length; i += 50) await Promise.all(crowd.slice(i, i + 50).map((g) => generations.create(g)));
        const mine = succeededWith('mine', [palette(['#c0392b', 1])], { owner: 'alice' });
        await generations.create(mine);
        expect(ids(await color([[RED, 1]], { limit: 1 }))).toEqual([mine.id]);
        expect(await index.nearestPalettes([0.6, 0.2, 0.1], 1, { owner: null, kinds: ['generation', 'reference'], k: 10 })).toEqual([]);
      });

      it('similarTo: the nearest palettes to an item of the caller, itself left out; 404 for others', async () => {
        const base = reference({ owner: 'alice', palette: palette([RED, 0.6], [BLUE, 0.4]) });
        const close = succeededWith('close', [palette([RED, 0.55], [BLUE, 0.45])], { owner: 'alice' });
        const far = succeededWith('far', [palette([GREEN, 1])], { owner: 'alice' });
        const bobs = reference({ owner: 'bob', palette: palette([RED, 0.6], [BLUE, 0.4]) });
        await references.create(base);
        await references.create(bobs);
        for (const g of [close, far]) await generations.create(g);
        const similar = await search.search({ owner: 'alice', similarTo: { kind: 'reference', id: base.id }, kinds: ['generation', 'reference'], limit: 10 });
        expect(similar.mode).toBe('similar');
        expect(ids(similar.hits)).toEqual([close.id, far.id]);
        await expect(search.search({ owner: 'bob', similarTo: { kind: 'reference', id: base.id }, kinds: ['reference'], limit: 10 })).rejects.toMatchObject({
          status: 404,
          code: 'REFERENCE_NOT_FOUND',
        });
        await expect(search.search({ owner: 'alice', similarTo: { kind: 'generation', id: base.id }, kinds: ['reference'], limit: 10 })).rejects.toMatchObject({
          status: 404,
          code: 'GENERATION_NOT_FOUND',
        });
        const queued = generation({ owner: 'alice' });
        await generations.create(queued);
        await expect(search.search({ owner: 'alice', similarTo: { kind: 'generation', id: queued.id }, kinds: ['reference'], limit: 10 })).rejects.toMatchObject({
          status: 400,
          code: 'NO_PALETTE',
        });
      });

      it('hybrid: items matching both the text and the colour come first, each showing its text rank and colour distance', async () => {
        // Many red things that are not foxes, many foxes that are not red, one red fox.
        const redThings = Array.from({ length: 30 }, (_, i) => succeededWith(`a red barn number ${i}`, [palette([RED, 1])], { owner: 'alice', createdAt: new Date(T0 + i) }));
        const blueFoxes = Array.from({ length: 30 }, (_, i) => succeededWith(`a fox in the snow ${i}`, [palette([BLUE, 1])], { owner: 'alice', createdAt: new Date(T0 + 100 + i) }));
        const redFox = succeededWith('a fox in autumn leaves, sleeping, curled up tight', [palette(['#c8402f', 0.8], [YELLOW, 0.2])], { owner: 'alice' });
        for (const g of [...redThings, ...blueFoxes, redFox]) await generations.create(g);
        const hybrid = await color([[RED, 1]], { q: 'fox', limit: 5 });
        expect(hybrid[0].id).toBe(redFox.id);
        expect(hybrid[0].text).toEqual({ rank: expect.any(Number) });
        expect(hybrid[0].color).toEqual({ distance: expect.any(Number), imageIndex: 0 });
        const textOnly = await search.search({ owner: 'alice', q: 'fox', kinds: ['generation'], limit: 5 });
        const colorOnly = await color([[RED, 1]], { limit: 5 });
        expect(ids(textOnly.hits)).not.toContain(redFox.id);
        expect(ids(colorOnly)).not.toContain(redFox.id);
      });
    });

    it('migration 0004 indexes the generations that existed before it', async () => {
      const old = await harness.openUnmigrated();
      try {
        const migrator = new Migrator({ db: old, provider: migrationProvider });
        const to3 = await migrator.migrateTo('0003_generation_images');
        expect(to3.error).toBeUndefined();
        const repoBefore = { prompt: 'an old teapot', id: newGenerationId() };
        const succeededBefore = succeededWith('an old kettle', [palette([GREEN, 1])], { owner: 'alice' });
        // Written as 0003 knew them: straight into the table.
        for (const g of [generation({ ...repoBefore, owner: 'alice' }), succeededBefore]) {
          await old
            .insertInto('generations')
            .values({
              id: g.id,
              owner: g.owner,
              status: g.status,
              stage: g.stage,
              prompt: g.prompt,
              model: g.model,
              aspect_ratio: g.aspectRatio,
              count: g.count,
              palette_size: g.paletteSize,
              created_at: g.createdAt.getTime(),
              timings: JSON.stringify(g.timings),
              images: JSON.stringify(g.images),
              input_tokens: 0,
              output_tokens: 0,
              updated_at: 0,
            })
            .execute();
        }
        const latest = await migrator.migrateToLatest();
        expect(latest.error).toBeUndefined();
        const oldSearch = new SearchService(new SearchRepository(old), new GenerationsRepository(old), new ReferencesRepository(old), new AppMetrics());
        expect(ids((await oldSearch.search({ owner: 'alice', q: 'teapot or kettle', kinds: ['generation'], limit: 5 })).hits).sort()).toEqual(
          [repoBefore.id, succeededBefore.id].sort(),
        );
        expect(ids((await oldSearch.search({ owner: 'alice', colors: [{ rgb: parseHex(GREEN)!, weight: 1 }], kinds: ['generation'], limit: 5 })).hits)).toEqual([
          succeededBefore.id,
        ]);
      } finally {
        await old.destroy();
      }
    });
  });
}
