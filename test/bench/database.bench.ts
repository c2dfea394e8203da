/**
 * Database benchmark: 10 000 inserts, one autocommit statement each, into a file database under a
 * temp folder; then history pages of 20 (first and half-way down) and lookups by id on that
 * 10 000-row table; then the same 10 000 inserts inside one transaction into a fresh file. Run alone with `node dist-test/bench/database.bench.js` after building, or through
 * `npm run bench`, which calls `run()`.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { emptyTimings, Generation } from '../../src/common/generation.model';
import { newGenerationId } from '../../src/common/ids';
import { createDatabase, databaseFile } from '../../src/database/database';
import { GenerationsRepository } from '../../src/database/generations.repository';

const ROWS = 10_000;
const PAGE = 20;
const SAMPLES = 500;

function generation(i: number, createdAt: number): Generation {
  return {
    id: newGenerationId(createdAt),
    owner: i % 2 === 0 ? 'tenant-a' : 'tenant-b',
    status: i % 10 === 0 ? 'failed' : 'succeeded',
    stage: 'done',
    prompt: `benchmark prompt number ${i}: a watercolor fox in a snowy forest, soft light`,
    model: 'gemini-2.5-flash-image',
    aspectRatio: '1:1',
    count: 1,
    paletteSize: 5,
    createdAt: new Date(createdAt),
    startedAt: new Date(createdAt + 5),
    completedAt: new Date(createdAt + 4000),
    timings: { ...emptyTimings(), queueMs: 5, geminiMs: 3500, uploadMs: 300, paletteMs: 40, totalMs: 4000 },
    images: [
      {
        index: 0,
        key: `generations/${i}/0.png`,
        mimeType: 'image/png',
        width: 1024,
        height: 1024,
        bytes: 1_500_000,
        palette: Array.from({ length: 5 }, () => ({
          hex: '#336699',
          rgb: [51, 102, 153] as [number, number, number],
          proportion: 0.2,
        })),
      },
    ],
    usage: { inputTokens: 14, outputTokens: 1290 },
    error: null,
    references: [],
    paletteHint: false,
  };
}

function stats(samples: number[]): { meanMs: number; p50Ms: number; p95Ms: number; maxMs: number } {
  const sorted = [...samples].sort((a, b) => a - b);
  const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
  const round = (n: number) => Math.round(n * 1000) / 1000;
  return {
    meanMs: round(samples.reduce((a, b) => a + b, 0) / samples.length),
    p50Ms: round(at(0.5)),
    p95Ms: round(at(0.95)),
    maxMs: round(sorted[sorted.length - 1]),
  };
}

async function time(fn: () => Promise<unknown>): Promise<number> {
  const t = performance.now();
  await fn();
  return performance.now() - t;
}

export async function run(): Promise<Record<string, unknown>> {
  const dir = mkdtempSync(join(tmpdir(), 'his-db-bench-'));
  const base = Date.UTC(2030, 0, 1);
  try {
    const db = await createDatabase(databaseFile(join(dir, 'each')));
    const rows = Array.from({ length: ROWS }, (_, i) => generation(i, base + i * 7));
    let insertEachMs: number;
    const firstPage: number[] = [];
    const deepPage: number[] = [];
    const byId: number[] = [];
    try {
      const repo = new GenerationsRepository(db);
      // Each create is its own autocommit statement, as in the service (one per request).
      insertEachMs = await time(async () => {
        for (const g of rows) await repo.create(g);
      });

      // A cursor half-way down the table, to show a deep page costs what the first one does.
      let cursor = (await repo.list({ owner: 'tenant-a', limit: PAGE })).nextCursor!;
      for (let p = 1; p < ROWS / PAGE / 2; p++) cursor = (await repo.list({ owner: 'tenant-a', limit: PAGE, cursor })).nextCursor!;
      for (let s = 0; s < SAMPLES; s++) {
        firstPage.push(await time(() => repo.list({ owner: 'tenant-a', limit: PAGE })));
        deepPage.push(await time(() => repo.list({ owner: 'tenant-a', limit: PAGE, cursor })));
        byId.push(await time(() => repo.findById(rows[(s * 37) % ROWS].id, rows[(s * 37) % ROWS].owner)));
      }
    } finally {
      await db.destroy();
    }

    // The same 10 000 rows inside one transaction, in a fresh file: the storage-engine bound.
    const batchDb = await createDatabase(databaseFile(join(dir, 'batch')));
    let insertOneTransactionMs: number;
    try {
      insertOneTransactionMs = await time(() =>
        batchDb.transaction().execute(async (trx) => {
          const inTrx = new GenerationsRepository(trx);
          for (const g of rows) await inTrx.create(g);
        }),
      );
    } finally {
      await batchDb.destroy();
    }

    return {
      benchmark: 'database',
      engine: 'node:sqlite file (WAL, synchronous=NORMAL) via Kysely',
      rows: ROWS,
      insert10kEachAutocommitMs: Math.round(insertEachMs),
      insertEachAutocommitPerSec: Math.round(ROWS / (insertEachMs / 1000)),
      insert10kOneTransactionMs: Math.round(insertOneTransactionMs),
      listFirstPage20: stats(firstPage),
      listDeepPage20: stats(deepPage),
      findById: stats(byId),
      samples: SAMPLES,
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

if (require.main === module) {
  run()
    .then((result) => console.log(JSON.stringify(result)))
    .catch((error: unknown) => {
      console.error(error);
      process.exitCode = 1;
    });
}
