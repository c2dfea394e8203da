/**
 * A preload for the service under `npm run load -- --memory-detail` (`node --import=<this file>`):
 * every MEMORY_PROBE_MS (default 15 s) it appends one JSON line to MEMORY_PROBE_OUT with where the
 * process's memory is, by kind — the resident V8 heap of the main thread (its objects, young
 * generation, code), its C++ (Oilpan) heap, the heaps of the worker threads (the palette pool), Buffers, and from
 * /proc/self/smaps glibc's main heap, V8's 256 kB page mappings (and of those the young
 * generation's), the other anonymous mappings and lazily freed pages. RSS alone says that memory
 * grows; this says which.
 *
 * It runs inside the service, so it stays cheap: one smaps read (≈ 1 000 mappings) and one 8-byte
 * read per V8 page per sample. It only observes; nothing here changes how the service allocates.
 */
import { appendFileSync, openSync, readdirSync, readFileSync, readSync } from 'node:fs';
import { syncBuiltinESMExports } from 'node:module';
import v8 from 'node:v8';
import type { Worker as WorkerType } from 'node:worker_threads';
import type { ProbeSample } from './memory-detail';

// Self-contained on purpose (only type imports): Node loads this file before the service, from
// dist-tools/ or, under Jest, from source with its types stripped.
// The service's modules import `Worker` from node:worker_threads; replacing the builtin's export
// (and syncing the ESM view of it) lets the probe see the workers they start.
const workerThreads = process.getBuiltinModule('node:worker_threads');

const out = process.env.MEMORY_PROBE_OUT;
if (workerThreads.isMainThread && out) {
  const workers = new Set<WorkerType>();
  const Base = workerThreads.Worker;
  class ObservedWorker extends Base {
    constructor(...args: ConstructorParameters<typeof Base>) {
      super(...args);
      workers.add(this);
      this.once('exit', () => workers.delete(this));
    }
  }
  (workerThreads as { Worker: typeof Base }).Worker = ObservedWorker;
  syncBuiltinESMExports();

  const intervalMs = Number(process.env.MEMORY_PROBE_MS ?? 15_000);
  // The first word of a V8 page is its flags (MemoryChunk); read through /proc/self/mem, which
  // any process may read of itself.
  const mem = openSync('/proc/self/mem', 'r');
  const word = Buffer.alloc(8);
  const pageFlags = (start: number): bigint | null => {
    try {
      return readSync(mem, word, 0, 8, BigInt(start)) === 8 ? word.readBigUInt64LE(0) : null;
    } catch {
      return null; // unmapped since smaps was read
    }
  };
  const sample = async (): Promise<ProbeSample> => {
    const status = readFileSync('/proc/self/status', 'utf8');
    const heap = v8.getHeapStatistics();
    const spaces = v8.getHeapSpaceStatistics();
    const phys = (names: string[]) => spaces.filter((s) => names.includes(s.space_name)).reduce((a, s) => a + s.physical_space_size, 0);
    let workerPhysical = 0;
    for (const worker of workers) {
      try {
        workerPhysical += (await worker.getHeapStatistics()).total_physical_size;
      } catch {
        // a worker that is exiting right now
      }
    }
    const maps = smapsByKind(readFileSync('/proc/self/smaps', 'utf8'), pageFlags);
    return {
      at: Date.now(),
      rssAnonKb: statusKb(status, 'RssAnon'),
      rssFileKb: statusKb(status, 'RssFile'),
      threads: statusKb(status, 'Threads'),
      fds: readdirSync('/proc/self/fd').length,
      v8MainPhysical: heap.total_physical_size,
      v8MainUsed: heap.used_heap_size,
      v8MainCodePhysical: phys(['code_space', 'code_large_object_space', 'trusted_space', 'trusted_large_object_space']),
      v8MainNewPhysical: phys(['new_space', 'new_large_object_space']),
      v8WorkersPhysical: workerPhysical,
      // @types/node types the result as `object`; Node 24 documents resident_size_bytes.
      cppHeapResident: (v8.getCppHeapStatistics('brief') as { resident_size_bytes: number }).resident_size_bytes,
      arrayBuffers: process.memoryUsage().arrayBuffers,
      mallocMainHeapKb: maps.brk,
      v8PagesKb: maps.v8Pages,
      v8YoungPagesKb: maps.v8YoungPages,
      otherAnonKb: maps.other,
      lazyFreeKb: maps.lazyFree,
    };
  };
  setInterval(() => {
    sample().then(
      (s) => appendFileSync(out, `${JSON.stringify(s)}\n`),
      (error: unknown) => appendFileSync(out, `${JSON.stringify({ at: Date.now(), error: String(error) })}\n`),
    );
  }, intervalMs).unref();
}

function statusKb(status: string, key: string): number {
  return Number(new RegExp(`^${key}:\\s+(\\d+)`, 'm').exec(status)?.[1] ?? 0);
}

/**
 * Resident anonymous kB by kind of mapping: glibc's main heap (`[heap]`); V8's pages, which are
 * mapped 256 kB at a time (every isolate: main thread and workers, resident whether V8 counts them
 * in a space or keeps them pooled), and of those the young generation's (semi-space) pages; every
 * other anonymous mapping (glibc's other arenas, malloc chunks over the mmap threshold such as
 * image buffers, thread stacks, V8's code range). Plus the pages given back with madvise(MADV_FREE)
 * that still count as resident until the kernel needs them (`LazyFree`): RSS includes them, yet
 * they are free memory.
 *
 * `pageFlags(start)` reads a page's first word: V8's page flags, where FROM_PAGE (1 << 3) and
 * TO_PAGE (1 << 4) mark the young generation (V8 internals, stable for years; checked against
 * Node 24's V8 13.6, where every 256 kB mapping is a V8 page and ≈ 550 of them are semi-space pages).
 */
export function smapsByKind(
  smaps: string,
  pageFlags: (start: number) => bigint | null = () => null,
): { brk: number; v8Pages: number; v8YoungPages: number; other: number; lazyFree: number } {
  let brk = 0;
  let v8Pages = 0;
  let v8YoungPages = 0;
  let other = 0;
  let lazyFree = 0;
  for (const block of smaps.split(/\n(?=[0-9a-f]+-[0-9a-f]+ )/)) {
    const head = block.slice(0, block.indexOf('\n')).split(/\s+/);
    const path = head.slice(5).join(' ');
    const [start, end] = head[0].split('-').map((hex) => Number.parseInt(hex, 16));
    const kb = Number(/^Anonymous:\s+(\d+)/m.exec(block)?.[1] ?? 0);
    lazyFree += Number(/^LazyFree:\s+(\d+)/m.exec(block)?.[1] ?? 0);
    if (path === '[heap]') brk += kb;
    else if (path !== '') continue;
    else if (end - start === 256 * 1024) {
      v8Pages += kb;
      const flags = kb > 0 && head[1].startsWith('r') ? pageFlags(start) : null;
      if (flags !== null && (flags & YOUNG_PAGE_FLAGS) !== 0n) v8YoungPages += kb;
    } else other += kb;
  }
  return { brk, v8Pages, v8YoungPages, other, lazyFree };
}

/** V8's MemoryChunk::FROM_PAGE | TO_PAGE. */
const YOUNG_PAGE_FLAGS = (1n << 3n) | (1n << 4n);
