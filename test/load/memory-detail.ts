/**
 * `--memory-detail`: the samples of memory-probe.ts (written by the service itself) turned into a
 * table of where the memory of a run's measured window went, kind by kind — so a soak whose RSS
 * rises says whether that is the JS heap, compiled code, Buffers, malloc or thread memory.
 */
import { existsSync, readFileSync } from 'node:fs';
import { extname, join } from 'node:path';
import { round, slopePerMinute } from './stats';

/** One line of the probe's output. Byte counts from V8/Node, kB counts from /proc. */
export interface ProbeSample {
  at: number;
  rssAnonKb: number;
  rssFileKb: number;
  threads: number;
  fds: number;
  /** Committed-and-touched pages of every V8 space of the main thread. */
  v8MainPhysical: number;
  v8MainUsed: number;
  /** Of v8MainPhysical: compiled code and bytecode (code and trusted spaces). */
  v8MainCodePhysical: number;
  /** Of v8MainPhysical: the young generation. */
  v8MainNewPhysical: number;
  /** The main thread's C++ heap (Oilpan/cppgc: Node's objects that V8's GC traces), not in v8MainPhysical. */
  cppHeapResident: number;
  /** Every worker thread's V8 heap (the palette pool). */
  v8WorkersPhysical: number;
  /** Buffers and ArrayBuffers of the main thread (their memory is malloc'd or mmapped). */
  arrayBuffers: number;
  /** glibc's main heap (`[heap]`), resident anonymous kB. */
  mallocMainHeapKb: number;
  /** Anonymous mappings of V8's 256 kB pages (every isolate), resident kB. */
  v8PagesKb: number;
  /** Of v8PagesKb: the young generation's (semi-space) pages. Absent in files of older probes. */
  v8YoungPagesKb?: number;
  /** Every other anonymous mapping: glibc's other arenas, chunks over the mmap threshold, stacks. */
  otherAnonKb: number;
  /** Pages freed with MADV_FREE, still counted in RSS until the kernel reclaims them. */
  lazyFreeKb: number;
}

export interface MemoryKindRow {
  kind: string;
  /** Mean over the first and the last `edgeS` seconds of the window, MB. */
  startMb: number | null;
  endMb: number | null;
  /** Linear fit over the whole window and over its second half, MB per minute. */
  slopeMbPerMin: number | null;
  secondHalfSlopeMbPerMin: number | null;
}

export interface MemoryDetail {
  windowS: number;
  edgeS: number;
  samples: number;
  rows: MemoryKindRow[];
  /** Where the probe wrote, for a closer look. */
  file: string;
}

export const PROBE_FILE = 'memory-probe.jsonl';
/**
 * The probe, for `node --import=`: compiled beside this file under dist-tools/, or its source when
 * the harness itself runs from source (Jest): Node 24 strips the types of a .ts file it imports.
 */
export const PROBE_MODULE = join(__dirname, `memory-probe${extname(__filename)}`);

const MB = 1024 * 1024;
/** The kinds of the table, in MB: each a function of one sample. */
const KINDS: [string, (s: ProbeSample) => number][] = [
  ['RSS, anonymous', (s) => s.rssAnonKb / 1024],
  ['  of which lazily freed (MADV_FREE: reclaimable)', (s) => s.lazyFreeKb / 1024],
  ['RSS, anonymous, without the lazily freed', (s) => (s.rssAnonKb - s.lazyFreeKb) / 1024],
  ['RSS, file-backed', (s) => s.rssFileKb / 1024],
  ['V8 heap, main thread (resident)', (s) => s.v8MainPhysical / MB],
  ['  of which objects (live and not yet collected)', (s) => s.v8MainUsed / MB],
  ['  of which young generation', (s) => s.v8MainNewPhysical / MB],
  ['  of which code and bytecode', (s) => s.v8MainCodePhysical / MB],
  ['C++ (Oilpan) heap, main thread', (s) => s.cppHeapResident / MB],
  ['V8 heaps, worker threads (resident)', (s) => s.v8WorkersPhysical / MB],
  ['Buffers, main thread', (s) => s.arrayBuffers / MB],
  ['glibc main heap ([heap])', (s) => s.mallocMainHeapKb / 1024],
  ['V8 pages, every isolate (256 kB mappings)', (s) => s.v8PagesKb / 1024],
  ['  of which young generation (semi-spaces)', (s) => (s.v8YoungPagesKb ?? NaN) / 1024],
  ['other anonymous: malloc arenas, big chunks, stacks', (s) => s.otherAnonKb / 1024],
];

export function readProbeSamples(file: string): ProbeSample[] {
  if (!existsSync(file)) return [];
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter((line) => line.trim() !== '')
    .map((line) => JSON.parse(line) as ProbeSample & { error?: string })
    .filter((s) => s.error === undefined);
}

/**
 * The table for the samples taken between `fromMs` and `toMs` (epoch ms). The edges are 5 minutes
 * (a quarter of the window if that is shorter), long enough to average out the Buffers that come
 * and go with the images in flight.
 */
export function memoryDetailOf(samples: readonly ProbeSample[], fromMs: number, toMs: number, file: string): MemoryDetail | null {
  const window = samples.filter((s) => s.at >= fromMs && s.at <= toMs);
  if (window.length < 4) return null;
  const start = window[0].at;
  const span = (window[window.length - 1].at - start) / 1000;
  const edgeS = Math.min(300, span / 4);
  const mean = (xs: number[]) => (xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : null);
  const seconds = (s: ProbeSample) => (s.at - start) / 1000;
  const rows = KINDS.map(([kind, value]) => ({
    kind,
    startMb: round(mean(window.filter((s) => seconds(s) <= edgeS).map(value)) ?? NaN),
    endMb: round(mean(window.filter((s) => seconds(s) >= span - edgeS).map(value)) ?? NaN),
    slopeMbPerMin: slopePerMinute(window.map((s) => [seconds(s), value(s)])),
    secondHalfSlopeMbPerMin: slopePerMinute(window.filter((s) => seconds(s) >= span / 2).map((s) => [seconds(s), value(s)])),
  }));
  return { windowS: round(span, 0) ?? 0, edgeS: round(edgeS, 0) ?? 0, samples: window.length, rows, file };
}
