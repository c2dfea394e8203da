/**
 * `npm run bench -- palette-liveness [--variants=baseline,nice,…] [--duration-s=25] …`: does the
 * event loop stay free while the palette pool is saturated? (issue #15)
 *
 * For each variant, one after another, a fresh service (`dist/main.js`, production memory settings,
 * embedded defaults, its own DATA_DIR and ports, no Gemini: palettes do not call it) and:
 *
 * - exactly `--concurrency` (16) palette uploads in flight all the time: each of 16 lanes posts
 *   `POST /api/v1/palettes` with a photo-like 2048² image (`--format`: png, 10 MB, the default, or
 *   jpeg, 1.6 MB; test/support/images.ts photoLikeRaw), waits for the answer and posts again;
 * - a prober in a separate process (test/bench/liveness-probe.ts) sending `GET /health/live` every
 *   `--probe-ms` (20) over one keep-alive connection, open loop (latency from each probe's due time);
 * - once a second, the service's /metrics (event-loop delay p99/max of that second, utilization)
 *   and /proc (its CPU by thread role, the machine's CPU).
 *
 * A refused upload (503) is retried after its Retry-After (≤ 5 s), as a well-behaved client does.
 * `--warmup-s` (5) of uploads come first, unrecorded. Overload shedding is off
 * (`OVERLOAD_SHEDDING=false`) so each option's raw effect shows; the modifier `shed` turns it on as
 * in production. `--cpu-prof` writes V8 CPU profiles of the service's threads (whole run, warm-up
 * included) and reports the busiest parts of the event loop.
 *
 * A variant is `+`-joined modifiers over `baseline` (the settings before issue #15: PALETTE_WORKERS =
 * cores, PALETTE_WORKER_NICE=0, PALETTE_LIBVIPS_THREADS=1); `defaults` sets nothing (what ships):
 *   nice[=N] (PALETTE_WORKER_NICE, 10 without N) · nice-all[=N] (the same, PALETTE_NICE_THREADS=all:
 *   libuv and libvips threads too) · workers-1 (cores − 1) · workers=N ·
 *   vips=N (PALETTE_LIBVIPS_THREADS; 0 = libvips' default, one per core) · shed
 * e.g. `--variants=baseline,nice,workers-1,nice+workers-1,vips=0,defaults,defaults+shed`.
 *
 * A readable table goes to stdout before main.ts prints the JSON summary; progress goes to stderr.
 */
import { fork } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { Agent, request } from 'node:http';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { summarizeProfile, type CpuProfile, type ProfileSummary } from '../load/cpu-profile';
import { readMachineCpu, readProc, readThreadCpu, startService, useDistSnapshot, type ServiceProcess, type ThreadCpu } from '../load/processes';
import { ELD_RESOLUTION_MS, Sampler, type Tick } from '../load/sampler';
import { Samples, round, seriesStats } from '../load/stats';
import { encode, photoLikeRaw } from '../support/images';
import type { ProbeCommand, ProbeReport } from './liveness-probe';

export const usage = `palette-liveness: 16 concurrent 2048² palette uploads; /health/live p50/p99/max from a separate process, per variant
  --variants=LIST    comma-separated; each a +-joined list of modifiers over "baseline" (or "defaults" = what ships):
                     nice[=N], nice-all[=N], workers-1, workers=N, vips=N (0 = libvips default), shed
                     (default: baseline,defaults)
  --duration-s=N     measured seconds per variant (25)          --warmup-s=N   unrecorded seconds first (5)
  --concurrency=N    uploads in flight (16)                     --probe-ms=N   probe interval (20)
  --format=png|jpeg  the uploaded 2048² photo-like image (png)  --side=N       its side (2048)
  --cpu-prof         V8 CPU profiles of the service; the event loop's busiest parts in the summary`;

const BOUNDARY = 'palette-liveness-boundary';
const UPLOAD_TIMEOUT_MS = 60_000;
const MAX_RETRY_AFTER_S = 5;
const log = (line: string) => process.stderr.write(`[palette-liveness.bench] ${line}\n`);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export interface Options {
  variants: string[];
  durationS: number;
  warmupS: number;
  concurrency: number;
  probeMs: number;
  format: 'png' | 'jpeg';
  side: number;
  cpuProf: boolean;
}

export const DEFAULT_OPTIONS: Options = { variants: ['baseline', 'defaults'], durationS: 25, warmupS: 5, concurrency: 16, probeMs: 20, format: 'png', side: 2048, cpuProf: false };

/** The bench's `--name=value` flags (others, such as bench names, are main.ts's); throws on a bad value. */
export function parseOptions(argv: readonly string[], cores = availableParallelism()): Options {
  const opts: Options = { ...DEFAULT_OPTIONS, variants: [...DEFAULT_OPTIONS.variants] };
  const int = (name: string, value: string, min: number, max: number) => {
    const n = Number(value);
    if (!/^\d+$/.test(value) || n < min || n > max) throw new Error(`--${name} must be an integer ${min}..${max}, got "${value}"`);
    return n;
  };
  for (const arg of argv) {
    if (!arg.startsWith('--')) continue;
    const [name, value = ''] = arg.slice(2).split(/=(.*)/s, 2);
    switch (name) {
      case 'variants':
        opts.variants = value.split(',').map((v) => v.trim()).filter(Boolean);
        if (opts.variants.length === 0) throw new Error('--variants needs at least one variant');
        for (const v of opts.variants) variantEnv(v, cores); // validates
        break;
      case 'duration-s':
        opts.durationS = int(name, value, 1, 600);
        break;
      case 'warmup-s':
        opts.warmupS = int(name, value, 0, 120);
        break;
      case 'concurrency':
        opts.concurrency = int(name, value, 1, 256);
        break;
      case 'probe-ms':
        opts.probeMs = int(name, value, 1, 10_000);
        break;
      case 'side':
        opts.side = int(name, value, 16, 8192);
        break;
      case 'format':
        if (value !== 'png' && value !== 'jpeg') throw new Error(`--format must be png or jpeg, got "${value}"`);
        opts.format = value;
        break;
      case 'cpu-prof':
        opts.cpuProf = value === '' || value === 'true';
        break;
      default:
        // Flags of other benches run in the same invocation are theirs.
        break;
    }
  }
  return opts;
}

/** The settings before issue #15, pinned so that `baseline` keeps meaning that whatever ships. */
export function baselineEnv(cores: number): Record<string, string> {
  return { PALETTE_WORKERS: String(cores), PALETTE_WORKER_NICE: '0', PALETTE_NICE_THREADS: 'workers', PALETTE_LIBVIPS_THREADS: '1' };
}

/** The service environment of a variant such as `nice=5+workers-1`; throws on an unknown modifier. */
export function variantEnv(variant: string, cores: number): Record<string, string> {
  const parts = variant.split('+').map((p) => p.trim());
  const env: Record<string, string> = parts[0] === 'defaults' ? {} : baselineEnv(cores);
  for (const part of parts) {
    const [key, value] = part.split('=', 2) as [string, string | undefined];
    const num = (min: number, max: number) => {
      const n = Number(value);
      if (value === undefined || !/^\d+$/.test(value) || n < min || n > max) throw new Error(`variant "${variant}": ${key}= needs an integer ${min}..${max}`);
      return String(n);
    };
    if (part === 'baseline' || part === 'defaults') continue;
    else if (key === 'nice') env.PALETTE_WORKER_NICE = value === undefined ? '10' : num(0, 19);
    else if (key === 'nice-all') {
      env.PALETTE_WORKER_NICE = value === undefined ? '10' : num(0, 19);
      env.PALETTE_NICE_THREADS = 'all';
    } else if (part === 'workers-1') env.PALETTE_WORKERS = String(Math.max(1, cores - 1));
    else if (key === 'workers') env.PALETTE_WORKERS = num(1, 64);
    else if (key === 'vips') env.PALETTE_LIBVIPS_THREADS = num(0, 64);
    else if (part === 'shed') env.OVERLOAD_SHEDDING = 'true';
    else throw new Error(`variant "${variant}": unknown modifier "${part}" (nice[=N], nice-all[=N], workers-1, workers=N, vips=N, shed, baseline, defaults)`);
  }
  return env;
}

export interface VariantResult {
  variant: string;
  env: Record<string, string>;
  /** Nice values of the service's threads by thread name, read at the end of the measurement. */
  threadNice: Record<string, number[]>;
  /** `GET /health/live` from the prober process, ms from each probe's due time. */
  probe: { count: number; failures: number; unansweredAtEnd: number; p50: number | null; p99: number | null; max: number | null; ownEventLoopDelayP99Ms: number | null };
  /** The service's own event-loop delay (exported per second; the monitor's 10 ms resolution taken off): the median and worst second's p99, the worst max. */
  serviceEventLoop: { p99MedianMs: number | null; p99WorstMs: number | null; maxMs: number | null; utilizationMean: number | null };
  uploads: { completedPerSecond: number | null; p50Ms: number | null; p99Ms: number | null; outcomes: Record<string, number> };
  /** % of one core over the measured window (200 % = both cores); by thread role from /proc. */
  cpu: {
    servicePct: number | null;
    byThread: Record<keyof ThreadCpu, number> | null;
    machinePct: number | null;
    /** This bench's uploader and the prober process. */
    loadGeneratorPct: number | null;
    /** The machine less the service and the load generator: someone else's work on the shared cores (it skews the run). */
    othersPct: number | null;
  };
  /** With --cpu-prof: the event loop's busiest components and functions (self time, measured window only). */
  eventLoopProfile?: { busyShare: number; components: ProfileSummary['components']; functions: ProfileSummary['functions'] };
}

/** One uploaded multipart body, built once: head + image + tail. */
function multipartBody(image: Buffer, format: 'png' | 'jpeg'): Buffer {
  const head = Buffer.from(
    `--${BOUNDARY}\r\nContent-Disposition: form-data; name="image"; filename="photo.${format === 'png' ? 'png' : 'jpg'}"\r\n` +
      `Content-Type: image/${format}\r\n\r\n`,
  );
  return Buffer.concat([head, image, Buffer.from(`\r\n--${BOUNDARY}--\r\n`)]);
}

function upload(baseUrl: URL, agent: Agent, body: Buffer): Promise<{ outcome: string; ms: number; retryAfterS?: number }> {
  const started = performance.now();
  return new Promise((resolve) => {
    const req = request(
      {
        agent,
        host: baseUrl.hostname,
        port: baseUrl.port,
        method: 'POST',
        path: '/api/v1/palettes',
        headers: { 'content-type': `multipart/form-data; boundary=${BOUNDARY}`, 'content-length': String(body.length) },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          let outcome = String(res.statusCode);
          if ((res.statusCode ?? 0) >= 400) {
            try {
              outcome += ` ${(JSON.parse(Buffer.concat(chunks).toString('utf8')) as { code?: string }).code}`;
            } catch {
              // not JSON: the status alone
            }
          }
          const retryAfter = Number(res.headers['retry-after']);
          resolve({ outcome, ms: performance.now() - started, retryAfterS: Number.isFinite(retryAfter) && retryAfter > 0 ? retryAfter : undefined });
        });
        res.on('error', (e: NodeJS.ErrnoException) => resolve({ outcome: `0 ${e.code ?? e.message}`, ms: performance.now() - started }));
      },
    );
    req.setTimeout(UPLOAD_TIMEOUT_MS, () => req.destroy(Object.assign(new Error('timeout'), { code: 'TIMEOUT' })));
    req.on('error', (e: NodeJS.ErrnoException) => resolve({ outcome: `0 ${e.code ?? e.message}`, ms: performance.now() - started }));
    req.end(body);
  });
}

/** `concurrency` lanes, each uploading again as soon as its answer is in, until `stop()`. */
function keepUploading(baseUrl: string, body: Buffer, concurrency: number) {
  const url = new URL(baseUrl);
  const agent = new Agent({ keepAlive: true, maxSockets: concurrency });
  let running = true;
  let recording = false;
  const latency = new Samples();
  const outcomes = new Map<string, number>();
  const lanes = Array.from({ length: concurrency }, async () => {
    while (running) {
      const { outcome, ms, retryAfterS } = await upload(url, agent, body);
      if (recording && running) {
        outcomes.set(outcome, (outcomes.get(outcome) ?? 0) + 1);
        if (outcome === '200') latency.add(ms);
      }
      // A refusal (503 with shedding on) is retried after its Retry-After, as a well-behaved client
      // does (at most MAX_RETRY_AFTER_S; 1 s without one), not at once.
      if (outcome !== '200') await sleep(Math.min(MAX_RETRY_AFTER_S, retryAfterS ?? 1) * 1000);
    }
  });
  return {
    record() {
      recording = true;
    },
    async stop() {
      running = false;
      await Promise.all(lanes);
      agent.destroy();
      return { latency, outcomes: Object.fromEntries(outcomes) };
    },
  };
}

function startProber(liveUrl: string, intervalMs: number) {
  const child = fork(join(__dirname, 'liveness-probe.js'), [liveUrl, String(intervalMs)], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const report = new Promise<ProbeReport>((resolve, reject) => {
    child.once('message', (m) => resolve(m as ProbeReport));
    child.once('exit', (code) => reject(new Error(`the prober exited (code ${code}) before reporting`)));
  });
  report.catch(() => undefined);
  const send = (command: ProbeCommand) => child.send(command);
  return {
    start: () => send({ type: 'start' }),
    async stop(): Promise<ProbeReport> {
      send({ type: 'stop' });
      return report;
    },
    pid: child.pid!,
    kill: () => child.kill('SIGKILL'),
  };
}

/** Nice values of a process's threads by name (`libvips worker` → [10]), from /proc: did the setting apply? */
function threadNice(pid: number): Record<string, number[]> {
  const out: Record<string, Set<number>> = {};
  try {
    for (const tid of readdirSync(`/proc/${pid}/task`)) {
      try {
        const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
        const name = Number(tid) === pid ? 'main' : stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
        const nice = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[16]);
        (out[name] ??= new Set()).add(nice);
      } catch {
        // the thread ended meanwhile
      }
    }
  } catch {
    // not Linux, or the process is gone
  }
  return Object.fromEntries(Object.entries(out).map(([k, v]) => [k, [...v].sort((a, b) => a - b)]));
}

/**
 * The samples of a V8 CPU profile taken within [fromUs, toUs] (the monotonic clock V8 stamps them
 * with), as a profile of its own: start-up and warm-up left out.
 */
export function sliceProfile(profile: CpuProfile, fromUs: number, toUs: number): CpuProfile {
  const samples: number[] = [];
  const timeDeltas: number[] = [0];
  let t = profile.startTime;
  for (let i = 0; i < profile.samples.length; i++) {
    t += profile.timeDeltas[i] ?? 0;
    // summarizeProfile charges sample i with the gap to the next one.
    if (t >= fromUs && t <= toUs) {
      samples.push(profile.samples[i]);
      timeDeltas.push(profile.timeDeltas[i + 1] ?? 0);
    }
  }
  return { ...profile, samples, timeDeltas, startTime: Math.max(profile.startTime, fromUs), endTime: Math.min(profile.endTime, toUs) };
}

/** The event loop's profile (thread 0: `CPU.<date>.<time>.<pid>.0.<seq>.cpuprofile`) within the window. */
function eventLoopProfile(dir: string, window: { fromUs: number; toUs: number }): ProfileSummary | undefined {
  const file = readdirSync(dir).find((f) => /\.\d+\.0\.\d+\.cpuprofile$/.test(f));
  if (!file) return undefined;
  const profile = JSON.parse(readFileSync(join(dir, file), 'utf8')) as CpuProfile;
  return summarizeProfile(sliceProfile(profile, window.fromUs, window.toUs), file, 15);
}

/** Per-second ticks → the service's event-loop figures (resolution taken off, as the load harness does). */
export function eventLoopFigures(ticks: readonly Pick<Tick, 'eventLoopDelayP99Ms' | 'eventLoopDelayMaxMs' | 'eventLoopUtilization'>[]) {
  const minus = (v: number | null) => (v === null ? Number.NaN : Math.max(0, v - ELD_RESOLUTION_MS));
  const p99s = ticks.map((t) => minus(t.eventLoopDelayP99Ms)).filter(Number.isFinite).sort((a, b) => a - b);
  const maxes = ticks.map((t) => minus(t.eventLoopDelayMaxMs)).filter(Number.isFinite);
  const elu = seriesStats(ticks.map((t) => t.eventLoopUtilization ?? Number.NaN));
  return {
    p99MedianMs: p99s.length ? round(p99s[Math.floor((p99s.length - 1) / 2)]) : null,
    p99WorstMs: p99s.length ? round(p99s[p99s.length - 1]) : null,
    maxMs: maxes.length ? round(Math.max(...maxes)) : null,
    utilizationMean: elu.mean,
  };
}

/** Probe latencies → count, p50/p99/max (nearest rank). */
export function probeFigures(report: ProbeReport): VariantResult['probe'] {
  const s = new Samples();
  for (const ms of report.latenciesMs) s.add(ms);
  const sum = s.summary();
  return { count: sum.count, failures: report.failures, unansweredAtEnd: report.unansweredAtEnd, p50: sum.p50, p99: sum.p99, max: sum.max, ownEventLoopDelayP99Ms: round(report.ownEventLoopDelayP99Ms) };
}

async function runVariant(variant: string, body: Buffer, opts: Options, cores: number): Promise<VariantResult> {
  const env = variantEnv(variant, cores);
  const dataDir = await mkdtemp(join(tmpdir(), 'palette-liveness-'));
  const profileDir = opts.cpuProf ? join(dataDir, 'cpu-profiles') : undefined;
  let service: ServiceProcess | undefined;
  let prober: ReturnType<typeof startProber> | undefined;
  try {
    service = await startService({
      // Palettes never call Gemini; a closed port keeps the in-process emulator off.
      geminiUrl: 'http://127.0.0.1:9',
      dataDir,
      env: { OVERLOAD_SHEDDING: 'false', UPLOAD_TMP_DIR: join(dataDir, 'uploads'), ...env },
      logFile: join(dataDir, 'service.log'),
      cpuProfileDir: profileDir,
    });
    log(`${variant}: service pid ${service.pid}, env ${JSON.stringify(env)}; warm-up ${opts.warmupS} s`);
    prober = startProber(`${service.baseUrl}/health/live`, opts.probeMs);
    const uploads = keepUploading(service.baseUrl, body, opts.concurrency);
    await sleep(opts.warmupS * 1000);

    const sampler = new Sampler({ metricsUrl: service.metricsUrl, pid: service.pid }, () => 0);
    const cpu0 = readProc(service.pid);
    const own0 = process.cpuUsage();
    const prober0 = readProc(prober.pid);
    const threads0 = readThreadCpu(service.pid);
    const machine0 = readMachineCpu();
    const t0 = performance.now();
    // V8 stamps profile samples with the system-wide monotonic clock, in µs.
    const window = { fromUs: Number(process.hrtime.bigint() / 1000n), toUs: 0 };
    uploads.record();
    prober.start();
    sampler.start();
    await sleep(opts.durationS * 1000);
    const report = await prober.stop();
    window.toUs = Number(process.hrtime.bigint() / 1000n);
    const seconds = (performance.now() - t0) / 1000;
    const cpu1 = readProc(service.pid);
    const own1 = process.cpuUsage(own0);
    const prober1 = readProc(prober.pid);
    const threads1 = readThreadCpu(service.pid);
    const machine1 = readMachineCpu();
    const ticks = await sampler.stop();
    const nice = threadNice(service.pid);
    const done = await uploads.stop();

    const pct = (a: number, b: number) => round(((b - a) / seconds) * 100) ?? 0;
    const result: VariantResult = {
      variant,
      env,
      threadNice: nice,
      probe: probeFigures(report),
      serviceEventLoop: eventLoopFigures(ticks),
      uploads: {
        completedPerSecond: round((done.outcomes['200'] ?? 0) / seconds, 2),
        p50Ms: round(done.latency.percentile(50)),
        p99Ms: round(done.latency.percentile(99)),
        outcomes: done.outcomes,
      },
      cpu: {
        servicePct: cpu0 && cpu1 ? pct(cpu0.cpuSeconds, cpu1.cpuSeconds) : null,
        byThread:
          threads0 && threads1
            ? (Object.fromEntries(Object.keys(threads1).map((k) => [k, Math.max(0, pct(threads0[k as keyof ThreadCpu], threads1[k as keyof ThreadCpu]))])) as Record<keyof ThreadCpu, number>)
            : null,
        machinePct:
          machine0 && machine1 && machine1.total > machine0.total
            ? round(((machine1.busy - machine0.busy) / (machine1.total - machine0.total)) * cores * 100)
            : null,
        loadGeneratorPct: round(((own1.user + own1.system) / 1e6 / seconds) * 100 + (prober0 && prober1 ? ((prober1.cpuSeconds - prober0.cpuSeconds) / seconds) * 100 : 0)),
        othersPct: null,
      },
    };
    const { machinePct, servicePct, loadGeneratorPct } = result.cpu;
    if (machinePct !== null && servicePct !== null && loadGeneratorPct !== null) result.cpu.othersPct = round(Math.max(0, machinePct - servicePct - loadGeneratorPct));
    await service.stop();
    if (profileDir) {
      const main = eventLoopProfile(profileDir, window);
      if (main) result.eventLoopProfile = { busyShare: main.busyShare, components: main.components.slice(0, 10), functions: main.functions.slice(0, 15) };
    }
    log(`${variant}: ${JSON.stringify(result)}`);
    return result;
  } finally {
    prober?.kill();
    await service?.stop(5000);
    await rm(dataDir, { recursive: true, force: true });
  }
}

const cell = (v: number | null | undefined) => (v === null || v === undefined ? '–' : String(v));

/** The readable table: one row per variant. */
export function table(results: readonly VariantResult[]): string {
  const header =
    '| variant | probe p50 / p99 / max ms | service ELD p99 (median s / worst s) / max ms | uploads/s | upload p50 / p99 ms | CPU % service (loop / workers / libvips / libuv) · load generator · others | non-200 |';
  const rows = results.map((r) => {
    const t = r.cpu.byThread;
    const non200 = Object.entries(r.uploads.outcomes).filter(([k]) => k !== '200').map(([k, n]) => `${k}: ${n}`).join(', ') || '0';
    return (
      `| ${r.variant} | ${cell(r.probe.p50)} / **${cell(r.probe.p99)}** / ${cell(r.probe.max)} | ${cell(r.serviceEventLoop.p99MedianMs)} / ${cell(r.serviceEventLoop.p99WorstMs)} / ${cell(r.serviceEventLoop.maxMs)} ` +
      `| ${cell(r.uploads.completedPerSecond)} | ${cell(r.uploads.p50Ms)} / ${cell(r.uploads.p99Ms)} ` +
      `| ${cell(r.cpu.servicePct)} (${t ? `${t.main} / ${t.workers} / ${t.libvips} / ${t.libuv}` : '–'}) · ${cell(r.cpu.loadGeneratorPct)} · ${cell(r.cpu.othersPct)} | ${non200} |`
    );
  });
  return [header, `|${'---|'.repeat(7)}`, ...rows].join('\n');
}

export async function run(argv: readonly string[] = process.argv.slice(2)): Promise<Record<string, unknown>> {
  const cores = availableParallelism();
  const opts = parseOptions(argv, cores);
  const raw = photoLikeRaw(opts.side, opts.side, 8);
  const image = await encode(raw, opts.format);
  const body = multipartBody(image, opts.format);
  log(`${opts.side}² photo-like ${opts.format}, ${(image.length / 1e6).toFixed(2)} MB; ${opts.concurrency} uploads in flight; ${opts.variants.length} variant(s) × (${opts.warmupS} + ${opts.durationS} s)`);
  const removeSnapshot = useDistSnapshot();
  const results: VariantResult[] = [];
  try {
    for (const variant of opts.variants) results.push(await runVariant(variant, body, opts, cores));
  } finally {
    removeSnapshot();
  }
  console.log(`\npalette-liveness: ${opts.concurrency} × ${opts.side}² ${opts.format} uploads in flight, ${opts.durationS} s per variant, probe every ${opts.probeMs} ms from another process; ${cores} cores\n`);
  console.log(table(results));
  return {
    date: new Date().toISOString(),
    cores,
    image: { format: opts.format, side: opts.side, bytes: image.length },
    options: { ...opts, variants: undefined },
    results,
  };
}

if (require.main === module) {
  run().then(
    (summary) => console.log(JSON.stringify(summary)),
    (error: unknown) => {
      console.error(error);
      process.exit(1);
    },
  );
}
