/**
 * The processes a load run drives: the Gemini emulator and the service, each its own `node`
 * process (as in production, where Gemini is another machine), plus ground-truth CPU and RSS
 * read from /proc. Output goes to log files, not pipes: a busy service logs a line per request,
 * and reading that through a pipe would cost the harness CPU on the same two cores.
 */
import { ChildProcess, execFileSync, spawn } from 'node:child_process';
import { closeSync, cpSync, existsSync, openSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { EmulatorStats } from '../../src/gemini/emulator/emulator.server';
import { freePort } from '../support/service-process';

/** The package root, found upwards from here (this file runs from test/load and dist-tools/test/load). */
export function packageRoot(from = __dirname): string {
  for (let dir = from; ; dir = dirname(dir)) {
    if (existsSync(join(dir, 'package.json')) && existsSync(join(dir, 'node_modules'))) return dir;
    if (dirname(dir) === dir) throw new Error(`no package root above ${from}`);
  }
}

export const ROOT = packageRoot();

/**
 * The memory settings the service runs with in production (Dockerfile, `npm start`; a unit test
 * keeps the three in step): glibc malloc with two arenas and a fixed mmap threshold, so libvips'
 * multi-MB decode buffers go back to the OS instead of fragmenting per-thread arenas (without them
 * RSS creeps ≈ 1.2 MB/min at 10 generations/s), and V8's young generation capped at 2 × 16 MB
 * semi-spaces: Node 24's default (2 × 64 MB without pointer compression) becomes resident a page
 * at a time over hours, ≈ 0.6 MB/min under the soak. See
 * docs/notes/2026-11-25-memory-investigation.md.
 */
export const GLIBC_ALLOCATOR_ENV = { MALLOC_ARENA_MAX: '2', MALLOC_MMAP_THRESHOLD_: '131072' };
export const PRODUCTION_MEMORY_ENV = { ...GLIBC_ALLOCATOR_ENV, NODE_OPTIONS: '--max-semi-space-size=16' };
let distDir = join(ROOT, 'dist');
const serviceEntry = () => join(distDir, 'main.js');
const emulatorEntry = () => join(distDir, 'gemini', 'emulator', 'main.js');

/**
 * Runs the service and emulator from a private copy of dist/ for the rest of this process: a long
 * run must not break when someone rebuilds dist/ meanwhile (`nest build` deletes it first). The
 * copy sits inside the package (node_modules resolves upwards from it) with package.json beside it
 * (the service reads its version from there). Returns a function that removes the copy.
 */
export function useDistSnapshot(): () => void {
  const source = join(ROOT, 'dist');
  if (!existsSync(join(source, 'main.js'))) throw new Error(`${source}/main.js is missing: run \`npm run build\` first (\`npm run load\` does)`);
  const parent = join(ROOT, 'dist-tools', 'load-snapshot');
  removeStaleSnapshots(parent);
  const snapshot = join(parent, String(process.pid));
  rmSync(snapshot, { recursive: true, force: true });
  cpSync(source, join(snapshot, 'dist'), { recursive: true });
  cpSync(join(ROOT, 'package.json'), join(snapshot, 'package.json'));
  distDir = join(snapshot, 'dist');
  return () => {
    distDir = source;
    rmSync(snapshot, { recursive: true, force: true });
  };
}

export { freePort };

export interface ManagedProcess {
  readonly pid: number;
  readonly logFile: string;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** SIGTERM, then SIGKILL after `timeoutMs`; resolves once the process is gone. */
  stop(timeoutMs?: number): Promise<void>;
}

/** Variables of the harness's own shell that must not leak into the service or emulator. */
const PRIVATE_ENV =
  /^(OTEL_|GEMINI_|S3_|AWS_|METRICS_|PALETTE_|PIPELINE_|EMULATOR_|LOAD_|DATABASE_|REDIS_|QUEUE_|NODE_OPTIONS$|PORT$|DATA_DIR$|API_KEYS$|LOG_LEVEL$|MAX_ACTIVE_GENERATIONS_PER_CLIENT$|RATE_LIMIT_PER_MINUTE$|ROLE$|WORKER_CONCURRENCY$)/;

function spawnNode(entry: string, env: Record<string, string>, logFile: string, execArgv: string[] = []): { child: ChildProcess; managed: ManagedProcess } {
  if (!existsSync(entry)) throw new Error(`${entry} is missing: run \`npm run build\` first (\`npm run load\` does)`);
  const inherited = Object.fromEntries(Object.entries(process.env).filter(([k, v]) => v !== undefined && !PRIVATE_ENV.test(k))) as Record<string, string>;
  const fd = openSync(logFile, 'a');
  const child = spawn(process.execPath, [...execArgv, entry], { cwd: ROOT, env: { ...inherited, ...env }, stdio: ['ignore', fd, fd] });
  closeSync(fd);
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((done) => child.once('exit', (code, signal) => done({ code, signal })));
  let stopping: Promise<void> | undefined;
  const managed: ManagedProcess = {
    pid: child.pid!,
    logFile,
    exited,
    stop: (timeoutMs = 30_000) =>
      (stopping ??= (async () => {
        if (child.exitCode !== null || child.signalCode !== null) return;
        child.kill('SIGTERM');
        let timer: NodeJS.Timeout | undefined;
        const late = await Promise.race([exited.then(() => false), new Promise<boolean>((r) => (timer = setTimeout(() => r(true), timeoutMs)))]);
        clearTimeout(timer);
        if (late) {
          child.kill('SIGKILL');
          await exited;
        }
      })()),
  };
  return { child, managed };
}

async function waitForHttp(url: string, exited: ManagedProcess['exited'], timeoutMs: number, logFile: string): Promise<void> {
  let exit: { code: number | null } | undefined;
  void exited.then((e) => (exit = e));
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (exit) throw new Error(`${url}: process exited early (code ${exit.code}); see ${logFile}:\n${tail(logFile)}`);
    const ok = await fetch(url, { signal: AbortSignal.timeout(1000) }).then(
      (r) => r.ok,
      () => false,
    );
    if (ok) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${url} did not answer within ${timeoutMs} ms; see ${logFile}:\n${tail(logFile)}`);
}

function tail(file: string): string {
  try {
    return readFileSync(file, 'utf8').slice(-3000);
  } catch {
    return '';
  }
}

export interface EmulatorProcess extends ManagedProcess {
  url: string;
}

/** `node dist/gemini/emulator/main.js` with the given `EMULATOR_*` variables, on a free port. */
export async function startEmulator(env: Record<string, string>, logFile: string): Promise<EmulatorProcess> {
  const port = await freePort();
  const { managed } = spawnNode(emulatorEntry(), { EMULATOR_HOST: '127.0.0.1', EMULATOR_PORT: String(port), ...env }, logFile);
  const url = `http://127.0.0.1:${port}`;
  try {
    await waitForHttp(`${url}/health`, managed.exited, 15_000, logFile);
  } catch (error) {
    await managed.stop(1000);
    throw error;
  }
  return { ...managed, url };
}

/**
 * Renders each prompt once (the emulator caches the PNGs), so that the measured traffic finds them
 * cached; returns the first image, for palette uploads.
 */
export async function warmEmulator(url: string, prompts: readonly string[]): Promise<Buffer> {
  let firstPng: Buffer | undefined;
  for (const prompt of prompts) {
    // Faults are rolled per request even with a latency directive: a few tries, each bounded.
    for (let attempt = 0; attempt < 4; attempt++) {
      try {
        const res = await fetch(`${url}/v1/models/gemini-2.5-flash-image:generateContent`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', 'x-goog-api-key': 'load-test' },
          body: JSON.stringify({
            contents: [{ role: 'user', parts: [{ text: `${prompt} [emulator:latency=0]` }] }],
            generationConfig: { responseModalities: ['IMAGE'], imageConfig: { aspectRatio: '1:1' } },
          }),
          signal: AbortSignal.timeout(5000),
        });
        if (!res.ok) continue;
        const body = (await res.json()) as { candidates?: { content?: { parts?: { inlineData?: { data?: string } }[] } }[] };
        const data = body.candidates?.[0]?.content?.parts?.find((p) => p.inlineData?.data)?.inlineData?.data;
        if (data) {
          firstPng ??= Buffer.from(data, 'base64');
          break;
        }
      } catch {
        // a hang or a refused connection: try again
      }
    }
  }
  if (!firstPng) throw new Error('the emulator produced no image during warm-up');
  return firstPng;
}

/** The counters of an emulator process (`GET /stats`; see src/gemini/emulator/emulator.server.ts). */
export async function emulatorStats(url: string): Promise<EmulatorStats> {
  const res = await fetch(`${url}/stats`, { signal: AbortSignal.timeout(5000) });
  if (!res.ok) throw new Error(`${url}/stats answered ${res.status}`);
  return (await res.json()) as EmulatorStats;
}

export interface ServiceProcess extends ManagedProcess {
  baseUrl: string;
  metricsUrl: string;
  port: number;
  metricsPort: number;
}

/**
 * `node dist/main.js` on free ports, pointed at `geminiUrl`, with `env` on top; resolves when
 * `/health/live` answers. `cpuProfileDir` turns on V8's CPU profiler (written at exit).
 */
export async function startService(opts: {
  geminiUrl: string;
  dataDir: string;
  env: Record<string, string>;
  logFile: string;
  cpuProfileDir?: string;
  nodeArgs?: string[];
  /** Fixed ports (an instance started again behind a load balancer keeps its address); free ones by default. */
  port?: number;
  metricsPort?: number;
}): Promise<ServiceProcess> {
  const port = opts.port ?? (await freePort());
  const metricsPort = opts.metricsPort ?? (await freePort());
  const env: Record<string, string> = {
    ...PRODUCTION_MEMORY_ENV,
    PORT: String(port),
    METRICS_PORT: String(metricsPort),
    DATA_DIR: opts.dataDir,
    GEMINI_BASE_URL: opts.geminiUrl,
    GEMINI_API_KEY: 'load-test',
    // Scenario ends abort what is still running instead of waiting for 60 s Gemini tails.
    SHUTDOWN_DRAIN_MS: '0',
    LOG_LEVEL: 'info',
    ...opts.env,
  };
  const execArgv = [...(opts.nodeArgs ?? []), ...(opts.cpuProfileDir ? ['--cpu-prof', `--cpu-prof-dir=${opts.cpuProfileDir}`] : [])];
  const { managed } = spawnNode(serviceEntry(), env, opts.logFile, execArgv);
  const baseUrl = `http://127.0.0.1:${port}`;
  try {
    await waitForHttp(`${baseUrl}/health/live`, managed.exited, 60_000, opts.logFile);
  } catch (error) {
    await managed.stop(1000);
    throw error;
  }
  return { ...managed, baseUrl, metricsUrl: `http://127.0.0.1:${metricsPort}/metrics`, port, metricsPort };
}

/** Copies left by runs that were killed before they could remove their own. */
function removeStaleSnapshots(parent: string): void {
  if (!existsSync(parent)) return;
  for (const name of readdirSync(parent)) {
    const pid = Number(name);
    if (!Number.isInteger(pid) || pid === process.pid) continue;
    try {
      process.kill(pid, 0);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ESRCH') rmSync(join(parent, name), { recursive: true, force: true });
    }
  }
}

let clockTicks: number | undefined;
function ticksPerSecond(): number {
  if (clockTicks === undefined) {
    try {
      clockTicks = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
    } catch {
      clockTicks = 100;
    }
  }
  return clockTicks;
}

export interface ProcSample {
  /** User + system CPU seconds since the process started (all its threads). */
  cpuSeconds: number;
  rssBytes: number;
  threads: number;
}

/** Reads /proc/<pid>/stat and /status; undefined when the process is gone or /proc is absent. */
export function readProc(pid: number): ProcSample | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) may hold spaces; the fields after its closing parenthesis do not.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const utime = Number(fields[11]);
    const stime = Number(fields[12]);
    const threads = Number(fields[17]);
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const rssKb = Number(/^VmRSS:\s+(\d+)/m.exec(status)?.[1] ?? Number.NaN);
    return { cpuSeconds: (utime + stime) / ticksPerSecond(), rssBytes: rssKb * 1024, threads };
  } catch {
    return undefined;
  }
}

/** CPU seconds of a process's threads, summed by role (from each thread's name in /proc). */
export interface ThreadCpu {
  /** The event loop. */
  main: number;
  /** worker_threads: the palette pool's JavaScript. */
  workers: number;
  /** libvips' own threads: the palette's image decoding and resizing. */
  libvips: number;
  /** libuv's thread pool: file I/O, and sharp's calls into libvips. */
  libuv: number;
  /** V8's helper threads: concurrent GC marking/sweeping and background compilation. */
  v8: number;
  other: number;
}

const THREAD_ROLES: [RegExp, keyof ThreadCpu][] = [
  [/^MainThread$|^node$/, 'main'],
  [/^WorkerThread/, 'workers'],
  [/^libuv-worker/, 'libuv'],
  [/^libvips/, 'libvips'],
  [/^V8Worker/, 'v8'],
];

/** Per-role CPU seconds of `pid`'s threads; undefined when the process is gone. */
export function readThreadCpu(pid: number): ThreadCpu | undefined {
  const out: ThreadCpu = { main: 0, workers: 0, libvips: 0, libuv: 0, v8: 0, other: 0 };
  let tids: string[];
  try {
    tids = readdirSync(`/proc/${pid}/task`);
  } catch {
    return undefined;
  }
  for (const tid of tids) {
    try {
      const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
      const name = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      const seconds = (Number(fields[11]) + Number(fields[12])) / ticksPerSecond();
      const role = Number(tid) === pid ? 'main' : (THREAD_ROLES.find(([re]) => re.test(name))?.[1] ?? 'other');
      out[role] += seconds;
    } catch {
      // the thread ended between the listing and the read
    }
  }
  return out;
}

/** Busy and total CPU seconds of the whole machine, all cores (from /proc/stat). */
export function readMachineCpu(): { busy: number; total: number } | undefined {
  try {
    const line = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0];
    const [, ...fields] = line.trim().split(/\s+/);
    const [user, nice, system, idle, iowait = 0, irq = 0, softirq = 0, steal = 0] = fields.map(Number);
    const busy = user + nice + system + irq + softirq + steal;
    return { busy: busy / ticksPerSecond(), total: (busy + idle + iowait) / ticksPerSecond() };
  } catch {
    return undefined;
  }
}

/** The 1-minute load average of the machine (other engineers share it), or null off Linux. */
export function loadAverage(): [number, number, number] | null {
  try {
    const [a, b, c] = readFileSync('/proc/loadavg', 'utf8').split(' ').map(Number);
    return [a, b, c];
  } catch {
    return null;
  }
}
