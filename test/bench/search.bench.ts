/**
 * Search benchmark (`npm run bench -- search`): on SQLite (a file) and on PostgreSQL (a fresh
 * database on TEST_POSTGRES_URL; skipped with a reason when it does not answer), 100 000 generations
 * and 10 000 references of one tenant (plus 10 % of another tenant's, which must never show):
 *
 * - real palettes: 300 distinct images are drawn with sharp (a dominant colour family, a secondary
 *   one, a little of a third, noise), the palette engine's own worker code extracts each one's
 *   five-colour palette once, and every synthetic row gets one of them;
 * - known words: every prompt (or reference title) names one of 40 subjects in one of 8 styles;
 * - index build: rows are loaded in batches; the search index (FTS5 + R*Tree through triggers, or
 *   generated tsvector + cube columns under GIN + GiST) is timed on its own, and its disk size read;
 * - latency: p50/p99 of text, colour, similarTo and hybrid searches through SearchService (the code
 *   behind GET /api/v1/search: index queries, exact re-ranking, fusion, loading the items);
 * - quality on the labelled set: precision@10 of colour queries (relevant: the image's dominant
 *   family, and for two-colour queries its secondary too), and, on queries that need both signals
 *   (a subject and a colour), of text alone, colour alone and hybrid.
 *
 * Prints its summary as JSON (main.ts adds it to the last line).
 */
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { sql } from 'kysely';
import type { Generation, PaletteColor } from '../../src/common/generation.model';
import { newGenerationId } from '../../src/common/ids';
import type { Reference } from '../../src/common/reference.model';
import { createDatabase, Database, databaseFile, DatabaseTarget } from '../../src/database/database';
import { generationRow, GenerationsRepository } from '../../src/database/generations.repository';
import { referenceRow, ReferencesRepository } from '../../src/database/references.repository';
import { SearchRepository } from '../../src/database/search.repository';
import { dialectOf, insertColors, referenceBody } from '../../src/database/search-index';
import paletteTask from '../../src/palette/palette.worker';
import { ItemKind, ownerKindCode, parseHex } from '../../src/search/color-space';
import { QueryColor, SearchParams, SearchService } from '../../src/search/search.service';
import { AppMetrics } from '../../src/telemetry/app-metrics';
import { encode, regionsRaw, seededRandom } from '../support/images';
import { createTestDatabase } from '../support/postgres';

const GENERATIONS = Number(process.env.SEARCH_BENCH_GENERATIONS ?? 100_000);
const REFERENCES = Number(process.env.SEARCH_BENCH_REFERENCES ?? 10_000);
const DISTINCT_IMAGES = 300;
/** `sqlite,postgres` (default), or one of them. */
const DATABASES = (process.env.SEARCH_BENCH_DATABASES ?? 'sqlite,postgres').split(',');
const OWNER = 'bench';
const OTHER_OWNER = 'other-tenant';
const SAMPLES = 200;
const WARMUP = 20;
const BATCH = 1000;

const FAMILIES: Record<string, string> = {
  red: '#d43434',
  orange: '#e8832a',
  yellow: '#f2d024',
  green: '#2e8b3c',
  teal: '#1f8a8a',
  blue: '#2a4d9b',
  purple: '#7b3fa0',
  pink: '#e57ab1',
  brown: '#7a4a2a',
  black: '#1a1a1a',
  white: '#f4f4f0',
  grey: '#8c8c8c',
};
const FAMILY_NAMES = Object.keys(FAMILIES);
const SUBJECTS = (
  'fox lighthouse teapot bicycle owl violin cactus sailboat robot castle dragon whale tractor ' +
  'guitar penguin umbrella volcano tiger piano rocket mushroom zebra windmill octopus camera ' +
  'pyramid giraffe helmet lantern anchor compass kettle rabbit parrot tortoise saxophone typewriter ' +
  'hedgehog glacier harbor'
).split(' ');
const STYLES = ['watercolor', 'photograph', 'oil painting', 'pencil sketch', 'isometric render', 'pixel art', 'linocut print', 'claymation still'];

interface LabelledImage {
  dominant: string;
  secondary: string;
  palette: PaletteColor[];
}

interface Labels {
  subject: string;
  image: number;
}

interface Item {
  kind: ItemKind;
  id: string;
  owner: string;
  createdAt: number;
  text: string;
  labels: Labels;
}

const round = (n: number, digits = 2) => Math.round(n * 10 ** digits) / 10 ** digits;

function percentiles(samples: number[]): { p50Ms: number; p99Ms: number; maxMs: number } {
  const sorted = [...samples].sort((a, b) => a - b);
  const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
  return { p50Ms: round(at(0.5)), p99Ms: round(at(0.99)), maxMs: round(sorted[sorted.length - 1]) };
}

function jitter(hex: string, rand: () => number, amount: number): string {
  const [r, g, b] = parseHex(hex)!;
  const j = (c: number) => Math.max(0, Math.min(255, Math.round(c + (rand() * 2 - 1) * amount)));
  return `#${[j(r), j(g), j(b)].map((c) => c.toString(16).padStart(2, '0')).join('')}`;
}

/** 300 images of known colour shares, through the palette engine's own worker function. */
async function labelledImages(): Promise<LabelledImage[]> {
  const rand = seededRandom(2030);
  const images: LabelledImage[] = [];
  for (let i = 0; i < DISTINCT_IMAGES; i++) {
    const dominant = FAMILY_NAMES[i % FAMILY_NAMES.length];
    const secondary = FAMILY_NAMES[(i % FAMILY_NAMES.length + 1 + (Math.floor(i / FAMILY_NAMES.length) % (FAMILY_NAMES.length - 1))) % FAMILY_NAMES.length];
    const third = FAMILY_NAMES[(FAMILY_NAMES.indexOf(secondary) + 5) % FAMILY_NAMES.length];
    // Known shares: dominant 55–70 %, secondary 23–42 %, a third colour 3–7 %.
    const dominantShare = 0.55 + 0.15 * rand();
    const thirdShare = 0.03 + 0.04 * rand();
    const colors = [
      { hex: jitter(FAMILIES[dominant], rand, 14), share: dominantShare },
      { hex: jitter(FAMILIES[secondary], rand, 14), share: 1 - dominantShare - thirdShare },
      { hex: jitter(FAMILIES[third === dominant ? 'grey' : third], rand, 14), share: thirdShare },
    ];
    const png = await encode(regionsRaw(colors, { width: 96, height: 96, noise: 6, seed: i + 1 }), 'png');
    const buffer = png.buffer.slice(png.byteOffset, png.byteOffset + png.byteLength) as ArrayBuffer;
    const answer = await paletteTask({ image: buffer, size: 5 });
    if (!answer.ok) throw new Error(`palette of bench image ${i}: ${answer.message}`);
    images.push({ dominant, secondary, palette: answer.palette.colors });
  }
  return images;
}

function synthesise(images: LabelledImage[]): Item[] {
  const rand = seededRandom(77);
  const base = Date.UTC(2030, 0, 1);
  const items: Item[] = [];
  const make = (kind: ItemKind, i: number, owner: string) => {
    const subject = SUBJECTS[Math.floor(rand() * SUBJECTS.length)];
    const style = STYLES[Math.floor(rand() * STYLES.length)];
    const image = Math.floor(rand() * images.length);
    const createdAt = base + i * 1000 + (kind === 'reference' ? 500 : 0);
    const text = kind === 'generation' ? `a ${style} of a ${subject}, detailed, soft light` : `${subject} ${style}`;
    items.push({ kind, id: newGenerationId(createdAt), owner, createdAt, text, labels: { subject, image } });
  };
  for (let i = 0; i < GENERATIONS; i++) make('generation', i, OWNER);
  for (let i = 0; i < REFERENCES; i++) make('reference', i, OWNER);
  for (let i = 0; i < (GENERATIONS + REFERENCES) / 10; i++) make(i % 10 === 0 ? 'reference' : 'generation', i, OTHER_OWNER);
  return items;
}

function generationOf(item: Item, palette: PaletteColor[]): Generation {
  return {
    id: item.id,
    owner: item.owner,
    status: 'succeeded',
    stage: 'done',
    prompt: item.text,
    model: 'gemini-2.5-flash-image',
    aspectRatio: '1:1',
    count: 1,
    paletteSize: 5,
    createdAt: new Date(item.createdAt),
    startedAt: new Date(item.createdAt + 5),
    completedAt: new Date(item.createdAt + 4000),
    timings: { queueMs: 5, geminiMs: 3500, uploadMs: 300, paletteMs: 40, totalMs: 4000 },
    images: [{ index: 0, key: `images/bench/${item.id}/0.png`, mimeType: 'image/png', width: 1024, height: 1024, bytes: 1_500_000, palette }],
    usage: { inputTokens: 14, outputTokens: 1290 },
    error: null,
    references: [],
    paletteHint: false,
  };
}

function referenceOf(item: Item, palette: PaletteColor[]): Reference {
  const [subject, ...style] = item.text.split(' ');
  return {
    id: item.id,
    owner: item.owner,
    title: `${subject} study`,
    tags: [style.join(' ')],
    storageKey: `references/bench/${item.id}.png`,
    mimeType: 'image/png',
    width: 800,
    height: 600,
    bytes: 250_000,
    palette,
    createdAt: new Date(item.createdAt),
  };
}

/**
 * Loads the records (without search entries), then the search entries, in batches of BATCH rows
 * per statement, each batch one transaction; returns the time of each part.
 */
async function load(db: Database, items: Item[], images: LabelledImage[]): Promise<{ recordsMs: number; indexMs: number }> {
  const t0 = performance.now();
  for (let i = 0; i < items.length; i += BATCH) {
    const batch = items.slice(i, i + BATCH);
    await db.transaction().execute(async (trx) => {
      const gens = batch.filter((it) => it.kind === 'generation').map((it) => generationOf(it, images[it.labels.image].palette));
      const refs = batch.filter((it) => it.kind === 'reference').map((it) => referenceOf(it, images[it.labels.image].palette));
      if (gens.length > 0) {
        await trx
          .insertInto('generations')
          .values(
            // Its final state written at once: updated when it completed.
            gens.map((g) => ({ ...generationRow(g), client: `key:${g.owner}`, updated_at: g.completedAt!.getTime() })),
          )
          .execute();
      }
      if (refs.length > 0) {
        await trx
          .insertInto('reference_images')
          .values(
            refs.map(referenceRow),
          )
          .execute();
      }
    });
  }
  const t1 = performance.now();
  for (let i = 0; i < items.length; i += BATCH) {
    const batch = items.slice(i, i + BATCH);
    await db.transaction().execute(async (trx) => {
      const rows = await trx
        .insertInto('search_items')
        .values(
          batch.map((it) => ({
            kind: it.kind,
            item_id: it.id,
            owner: it.owner,
            code: ownerKindCode(it.owner, it.kind),
            created_at: it.createdAt,
            body: it.kind === 'generation' ? it.text : referenceBody(...referenceTitleTags(it)),
          })),
        )
        .returning(['item_key', 'item_id', 'code'])
        .execute();
      // The same writes as the repositories' (search-index.ts): each distinct palette once.
      const byId = new Map(batch.map((it) => [it.id, it]));
      for (const row of rows) {
        await insertColors(trx, Number(row.item_key), Number(row.code), [{ imageIdx: 0, palette: images[byId.get(row.item_id)!.labels.image].palette }]);
      }
    });
  }
  return { recordsMs: t1 - t0, indexMs: performance.now() - t1 };
}

function referenceTitleTags(item: Item): [string, string[]] {
  const r = referenceOf(item, []);
  return [r.title!, r.tags];
}

async function diskSize(db: Database, file?: string): Promise<Record<string, number>> {
  const mb = (bytes: number) => round(bytes / 1024 / 1024, 1);
  if (dialectOf(db) === 'postgres') {
    const { rows } = await sql<{ name: string; bytes: string }>`
      select name, pg_total_relation_size(name::regclass)::bigint::text as bytes from (values
        ('generations'), ('reference_images'), ('search_items'), ('search_colors'),
        ('search_items_tsv_idx'), ('search_colors_point_idx')) as t(name)`.execute(db);
    const size = Object.fromEntries(rows.map((r) => [r.name, Number(r.bytes)]));
    const database = Number((await sql<{ bytes: string }>`select pg_database_size(current_database())::text as bytes`.execute(db)).rows[0].bytes);
    return {
      databaseMB: mb(database),
      recordsMB: mb(size.generations + size.reference_images),
      searchIndexMB: mb(size.search_items + size.search_colors),
      ginIndexMB: mb(size.search_items_tsv_idx),
      gistIndexMB: mb(size.search_colors_point_idx),
    };
  }
  await sql`pragma wal_checkpoint(truncate)`.execute(db);
  const { rows } = await sql<{ name: string; bytes: number }>`select name, sum(pgsize) as bytes from dbstat group by name`.execute(db);
  const sum = (pattern: RegExp) => rows.filter((r) => pattern.test(r.name)).reduce((s, r) => s + Number(r.bytes), 0);
  return {
    databaseMB: mb(statSync(file!).size),
    recordsMB: mb(sum(/^(generations|reference_images)$|^sqlite_autoindex_(generations|reference_images)|^(generations|reference_images)_/)),
    searchIndexMB: mb(sum(/^search_|^sqlite_autoindex_search_/)),
    fts5MB: mb(sum(/^search_text/)),
    rtreeMB: mb(sum(/^search_color_index/)),
  };
}

interface QualityCase {
  params: Omit<SearchParams, 'owner' | 'limit' | 'kinds'>;
  relevant: (item: Item) => boolean;
}

async function precisionAt10(search: SearchService, byId: Map<string, Item>, cases: QualityCase[]): Promise<number> {
  let total = 0;
  for (const c of cases) {
    const { hits } = await search.search({ ...c.params, owner: OWNER, kinds: ['generation', 'reference'], limit: 10 });
    for (const hit of hits) if (byId.get(hit.id)!.owner !== OWNER) throw new Error('another tenant’s item in the results');
    total += hits.filter((h) => c.relevant(byId.get(h.id)!)).length / 10;
    if (process.env.SEARCH_BENCH_DEBUG) process.stderr.write(`${JSON.stringify(c.params)} ${hits.map((h) => (c.relevant(byId.get(h.id)!) ? 1 : 0)).join('')} ${hits.slice(0, 3).map((h) => `${h.color?.distance.toFixed(1)}/${h.text?.rank}`).join(' ')}\n`);
  }
  return round(total / cases.length, 3);
}

async function benchOne(target: string | DatabaseTarget, file: string | undefined, items: Item[], images: LabelledImage[]): Promise<Record<string, unknown>> {
  const db = await createDatabase(target);
  try {
    const loaded = await load(db, items, images);
    await sql`analyze`.execute(db);
    const search = new SearchService(new SearchRepository(db), new GenerationsRepository(db), new ReferencesRepository(db), new AppMetrics());
    const byId = new Map(items.map((it) => [it.id, it]));
    const mine = items.filter((it) => it.owner === OWNER);
    const rand = seededRandom(5);
    const pick = <T>(list: readonly T[]) => list[Math.floor(rand() * list.length)];
    const familyColor = (family: string, weight = 1): QueryColor => ({ rgb: parseHex(FAMILIES[family])!, weight });

    const queries: Record<string, () => Omit<SearchParams, 'owner' | 'kinds' | 'limit'>> = {
      text: () => ({ q: rand() < 0.5 ? pick(SUBJECTS) : `${pick(SUBJECTS)} ${pick(STYLES).split(' ')[0]}` }),
      color: () => {
        const n = 1 + Math.floor(rand() * 3);
        return { colors: Array.from({ length: n }, (_, i) => familyColor(pick(FAMILY_NAMES), i === 0 ? 60 : 20)) };
      },
      similarTo: () => {
        const it = pick(mine);
        return { similarTo: { kind: it.kind, id: it.id } };
      },
      hybrid: () => ({ q: pick(SUBJECTS), colors: [familyColor(pick(FAMILY_NAMES))] }),
    };
    const latency: Record<string, unknown> = {};
    for (const [name, make] of Object.entries(queries)) {
      const samples: number[] = [];
      let cpu = { user: 0, system: 0 };
      for (let i = 0; i < WARMUP + SAMPLES; i++) {
        const params = { ...make(), owner: OWNER, kinds: ['generation', 'reference'] as ItemKind[], limit: 20 };
        if (i === WARMUP) cpu = process.cpuUsage();
        const started = performance.now();
        await search.search(params);
        if (i >= WARMUP) samples.push(performance.now() - started);
      }
      const used = process.cpuUsage(cpu);
      // This process's CPU per search (PostgreSQL's own work is in its server processes, not here):
      // unlike wall time it hardly moves with what else the shared machine runs.
      latency[name] = { ...percentiles(samples), serviceCpuMsPerQuery: round((used.user + used.system) / 1000 / SAMPLES) };
    }
    latency.loadAverage1m = round(loadavg()[0], 1);

    const dominant = (f: string) => (it: Item) => images[it.labels.image].dominant === f;
    const colorCases: QualityCase[] = [
      ...FAMILY_NAMES.map((f) => ({ params: { colors: [familyColor(f)] }, relevant: dominant(f) })),
      ...FAMILY_NAMES.map((f, i) => {
        const second = FAMILY_NAMES[(i + 1 + (i % 5)) % FAMILY_NAMES.length];
        return {
          params: { colors: [familyColor(f, 62), familyColor(second, 33), ] },
          relevant: (it: Item) => images[it.labels.image].dominant === f && images[it.labels.image].secondary === second,
        };
      }),
    ];
    const bothCases = FAMILY_NAMES.map((f, i) => ({ subject: SUBJECTS[(i * 7) % SUBJECTS.length], family: f }));
    const both = (c: { subject: string; family: string }) => (it: Item) => it.labels.subject === c.subject && dominant(c.family)(it);
    const quality = {
      colorPrecisionAt10: await precisionAt10(search, byId, colorCases),
      needsBoth: {
        queries: bothCases.length,
        textOnlyPrecisionAt10: await precisionAt10(search, byId, bothCases.map((c) => ({ params: { q: c.subject }, relevant: both(c) }))),
        colorOnlyPrecisionAt10: await precisionAt10(search, byId, bothCases.map((c) => ({ params: { colors: [familyColor(c.family)] }, relevant: both(c) }))),
        hybridPrecisionAt10: await precisionAt10(search, byId, bothCases.map((c) => ({ params: { q: c.subject, colors: [familyColor(c.family)] }, relevant: both(c) }))),
      },
    };
    return {
      items: { generations: GENERATIONS, references: REFERENCES, otherTenant: items.length - GENERATIONS - REFERENCES, distinctPalettes: images.length },
      loadRecordsS: round(loaded.recordsMs / 1000, 1),
      buildSearchIndexS: round(loaded.indexMs / 1000, 1),
      disk: await diskSize(db, file),
      latency,
      quality,
    };
  } finally {
    await db.destroy();
  }
}

export async function run(): Promise<Record<string, unknown>> {
  const started = performance.now();
  const images = await labelledImages();
  const items = synthesise(images);
  process.stderr.write(`[search] ${images.length} palettes extracted, ${items.length} items in ${Math.round(performance.now() - started)} ms\n`);
  const dir = mkdtempSync(join(tmpdir(), 'his-search-bench-'));
  const result: Record<string, unknown> = { benchmark: 'search', samplesPerQueryType: SAMPLES, limit: 20 };
  try {
    const file = databaseFile(dir);
    if (DATABASES.includes('sqlite')) {
      process.stderr.write('[search] SQLite…\n');
      result.sqlite = await benchOne(file, file, items, images);
    }
    let pg: Awaited<ReturnType<typeof createTestDatabase>> | undefined;
    if (DATABASES.includes('postgres')) {
      process.stderr.write('[search] PostgreSQL…\n');
      try {
        pg = await createTestDatabase();
      } catch (error) {
        result.postgres = { skipped: (error as Error).message };
      }
    }
    if (pg) {
      try {
        result.postgres = await benchOne({ dialect: 'postgres', url: pg.url, poolSize: 4, connectTimeoutMs: 5000, statementTimeoutMs: 0, applicationName: 'search-bench' }, undefined, items, images);
      } finally {
        if (process.env.SEARCH_BENCH_KEEP) process.stderr.write(`[search] kept ${pg.url}\n`);
        else await pg.drop();
      }
    }
  } finally {
    // SEARCH_BENCH_KEEP=1 keeps the SQLite file for a closer look (its path goes to stderr).
    if (process.env.SEARCH_BENCH_KEEP) process.stderr.write(`[search] kept ${dir}\n`);
    else rmSync(dir, { recursive: true, force: true });
  }
  return result;
}

if (require.main === module) {
  run()
    .then((result) => console.log(JSON.stringify(result)))
    .catch((error: unknown) => {
      console.error(error);
      process.exitCode = 1;
    });
}
