/**
 * `npm run bench -- palette-memory`: does the process's resident memory keep growing under sustained
 * palette work? Runs the same stream of 1024² PNGs through the real PaletteService (2 workers, 4 tasks
 * in flight) in a fresh process per allocator setting, and samples RSS ten times along the way:
 *
 * - `glibc-default`: glibc's malloc as it comes (an arena per thread, a dynamic mmap threshold);
 * - `glibc-tuned`: `MALLOC_ARENA_MAX=2 MALLOC_MMAP_THRESHOLD_=131072`, what the Dockerfile and
 *   `npm start` set (test/load/processes.ts GLIBC_ALLOCATOR_ENV).
 *
 * The JS heap stays flat in both; what differs is native memory (libvips decode buffers of several MB
 * freed on libuv threads). `BENCH_PALETTE_MEMORY_TASKS` sets the task count (default 12 000).
 */
import { spawn } from 'node:child_process';
import { loadavg } from 'node:os';
import { loadConfig } from '../../src/config/app-config';
import { PaletteService } from '../../src/palette/palette.service';
import { GLIBC_ALLOCATOR_ENV } from '../load/processes';
import { encode, photoLikeRaw } from '../support/images';
import { noopPaletteMetrics } from '../support/metrics';

const DEFAULT_TASKS = 12_000;
const CHECKPOINTS = 10;
const IN_FLIGHT = 4;

interface Checkpoint {
  tasks: number;
  seconds: number;
  rssMb: number;
  heapMb: number;
}

/** The child: N tasks through a real pool, one JSON line per checkpoint on stdout. */
async function child(tasks: number): Promise<void> {
  const images = await Promise.all(Array.from({ length: 8 }, (_, seed) => encode(photoLikeRaw(1024, 1024, seed + 1), 'png')));
  const service = new PaletteService(loadConfig({ PALETTE_WORKERS: '2', PALETTE_MAX_QUEUE: String(IN_FLIGHT * 2) }), noopPaletteMetrics);
  const started = performance.now();
  const every = Math.max(1, Math.floor(tasks / CHECKPOINTS));
  let next = 0;
  let done = 0;
  const checkpoint = () => {
    const m = process.memoryUsage();
    const line: Checkpoint = { tasks: done, seconds: Math.round((performance.now() - started) / 100) / 10, rssMb: Math.round(m.rss / 1048576), heapMb: Math.round(m.heapUsed / 1048576) };
    process.stdout.write(`${JSON.stringify(line)}\n`);
  };
  const lane = async () => {
    while (next < tasks) {
      const image = images[next++ % images.length];
      await service.extract(image, 5);
      if (++done % every === 0) checkpoint();
    }
  };
  await Promise.all(Array.from({ length: IN_FLIGHT }, lane));
  await service.onModuleDestroy();
}

function runChild(tasks: number, env: Record<string, string>): Promise<Checkpoint[]> {
  const base = Object.fromEntries(Object.entries(process.env).filter(([k, v]) => v !== undefined && !k.startsWith('MALLOC_'))) as Record<string, string>;
  return new Promise((resolve, reject) => {
    const proc = spawn(process.execPath, [__filename, '--child', String(tasks)], { env: { ...base, ...env }, stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    proc.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
    proc.on('error', reject);
    proc.on('exit', (code) => {
      if (code !== 0) return reject(new Error(`palette-memory child exited with ${code}`));
      resolve(out.trim().split('\n').filter(Boolean).map((l) => JSON.parse(l) as Checkpoint));
    });
  });
}

/** RSS growth over the first and the second half of the run (from the first checkpoint on: warm-up excluded). */
function growth(points: Checkpoint[]) {
  const first = points[0];
  const mid = points[Math.floor((points.length - 1) / 2)];
  const last = points[points.length - 1];
  return {
    rssMb: points.map((p) => p.rssMb),
    heapMb: points.map((p) => p.heapMb),
    growthFirstHalfMb: mid.rssMb - first.rssMb,
    growthSecondHalfMb: last.rssMb - mid.rssMb,
    kbPerTaskSecondHalf: Math.round(((last.rssMb - mid.rssMb) * 1024) / Math.max(1, last.tasks - mid.tasks) * 100) / 100,
    tasksPerSecond: Math.round(last.tasks / last.seconds),
  };
}

export async function run(): Promise<Record<string, unknown>> {
  const tasks = Number(process.env.BENCH_PALETTE_MEMORY_TASKS ?? DEFAULT_TASKS);
  const loadBefore = loadavg()[0];
  const variants: Record<string, ReturnType<typeof growth>> = {};
  for (const [name, env] of [
    ['glibc-default', {}],
    ['glibc-tuned', GLIBC_ALLOCATOR_ENV],
  ] as const) {
    process.stderr.write(`[bench]   palette-memory: ${name}, ${tasks} tasks\n`);
    variants[name] = growth(await runChild(tasks, env));
  }
  return { tasks, checkpoints: CHECKPOINTS, inFlight: IN_FLIGHT, workers: 2, load1: { before: loadBefore, after: loadavg()[0] }, variants };
}

if (require.main === module && process.argv[2] === '--child') {
  child(Number(process.argv[3])).then(
    () => process.exit(0),
    (error: unknown) => {
      console.error(error);
      process.exit(1);
    },
  );
}
