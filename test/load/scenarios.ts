/**
 * The scenarios of `npm run load` and how one is run: a fresh service per run (its settings are
 * part of the scenario), a sampler on its `/metrics` and /proc, open-loop traffic in steps, then a
 * per-step summary computed from the requests and from the samples of the step's steady window.
 */
import autocannon from 'autocannon';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { summarizeProfiles, type ProfileSummary } from './cpu-profile';
import type { FloorResult } from './floor';
import { HttpDriver, LIGHT_ROUTES, RouteRecorder, ROUTES } from './http-driver';
import { DESCRIPTION as DISTRIBUTED_DESCRIPTION, type DistributedResult } from './distributed';
import { OVERLOAD_DESCRIPTION, type OverloadResult } from './overload';
import { memoryDetailOf, PROBE_FILE, PROBE_MODULE, readProbeSamples, type MemoryDetail } from './memory-detail';
import type { LoadOptions, ScenarioName } from './options';
import { loadAverage, startService } from './processes';
import { Sampler, type Tick, ELD_RESOLUTION_MS } from './sampler';
import { round, seriesStats, slopePerMinute, type LatencySummary } from './stats';
import { TrafficRunner, type GenerationOutcomes, type Workload } from './traffic';

/**
 * The harness is one client (one address, no key): it stands for many users, so the per-client fair
 * shares are lifted to the whole service's limits in every run; nothing else changes.
 */
const ONE_CLIENT_IS_EVERYONE = { MAX_ACTIVE_GENERATIONS_PER_CLIENT: '100000' };
const asOneClient = (settings: { GEMINI_MAX_CONCURRENCY: string; PIPELINE_MAX_QUEUE: string; PALETTE_WORKERS: string }) => ({
  ...settings,
  ...ONE_CLIENT_IS_EVERYONE,
  GEMINI_MAX_CONCURRENCY_PER_CLIENT: settings.GEMINI_MAX_CONCURRENCY,
});

/** The service's shipped defaults for the settings the report is about (CONTRACT.md). */
export const DEFAULT_SETTINGS = asOneClient({ GEMINI_MAX_CONCURRENCY: '4', PIPELINE_MAX_QUEUE: '100', PALETTE_WORKERS: '2' });
/** What the report recommends for a 2-core box (docs/capacity.md; the evidence is in docs/capacity/results.md). */
export const RECOMMENDED_SETTINGS = asOneClient({ GEMINI_MAX_CONCURRENCY: '256', PIPELINE_MAX_QUEUE: '256', PALETTE_WORKERS: '2' });
/**
 * Gemini's semaphore and queue so large that they never stop the work: what limits is the box. The
 * palette queue keeps its default; if colour extraction falls behind, new generations get 429s.
 */
export const UNBOUNDED_SETTINGS = asOneClient({ GEMINI_MAX_CONCURRENCY: '4000', PIPELINE_MAX_QUEUE: '4000', PALETTE_WORKERS: '2' });

/**
 * Light probes beside every generation workload, so route latency is always measured: 35 requests/s
 * give a 60 s step ≈ 2 000 samples, a p99 that rests on ≈ 20 of them rather than on a handful.
 */
const PROBES = { live: 10, status: 20, history: 5 };
/** Unrecorded traffic before the measured steps of a run. */
const WARMUP_TRAFFIC = { live: 20, status: 30, history: 10, image: 5, palette: 3 };
/** The product's real mix: pollers and long-waiters, downloads, history browsing, palette uploads. */
const MIXED_BACKGROUND = { live: 2, status: 20, history: 5, image: 10, palette: 2 };

export interface StepPlan {
  label: string;
  offeredGenerationsPerSecond: number;
  workload: Workload;
  /** Seconds at the start of the step left out of the rates and resource figures (ramp-up). */
  warmupS: number;
}

/** autocannon, closed loop: `connections` each send the next request as soon as the last answered. */
export interface SaturationPlan {
  connections: number;
  durationS: number;
}

export interface RunPlan {
  name: string;
  env: Record<string, string>;
  steps: StepPlan[];
  /** After the steps: autocannon at full speed on the read routes, for the saturation throughput. */
  saturation?: SaturationPlan;
}

export interface ScenarioPlan {
  name: ScenarioName;
  description: string;
  runs: RunPlan[];
}

export function planScenarios(opts: LoadOptions): ScenarioPlan[] {
  const full = opts.profile === 'full';
  const s = (short: number, long: number) => Math.round((full ? long : short) * opts.scale * 1000);
  const rates = opts.rates ?? (full ? [2, 5, 10, 20, 25, 30, 40] : [2, 6, 12]);
  const steadyWarmup = full ? 20 : 4;
  const plans: Record<ScenarioName, () => ScenarioPlan> = {
    reads: () => ({
      name: 'reads',
      description:
        'the API alone, no generation running: open-loop reads (¾ status of a finished generation, ¼ history page) at rising rates, ' +
        'then autocannon closed-loop at full speed for the saturation throughput',
      runs: [
        {
          name: 'reads',
          env: RECOMMENDED_SETTINGS,
          steps: (full ? [250, 500, 1000, 1500, 2000] : [250, 750]).map((rate) => ({
            label: `${rate} req/s`,
            offeredGenerationsPerSecond: 0,
            warmupS: 1,
            workload: { durationMs: s(4, 20), background: { status: rate * 0.75, history: rate * 0.25 } },
          })),
          saturation: { connections: 16, durationS: (full ? 15 : 3) * opts.scale },
        },
      ],
    }),
    steady: () => ({
      name: 'steady',
      description: 'Poisson generation arrivals at rising rates (Prefer: wait=60) plus light probes, with the semaphore out of the way: where the box itself saturates',
      runs: [
        {
          name: 'steady',
          env: UNBOUNDED_SETTINGS,
          steps: rates.map((rate) => ({
            label: `${rate}/s`,
            offeredGenerationsPerSecond: rate,
            warmupS: steadyWarmup * opts.scale,
            workload: { durationMs: s(8, 60), generations: { ratePerSecond: rate, waitShare: 1, pollMs: 2000, downloadShare: 0 }, background: PROBES },
          })),
        },
      ],
    }),
    burst: () => ({
      name: 'burst',
      description: 'a burst of creates against the shipped defaults: the queue fills, the rest get a deliberate 429 QUEUE_FULL with Retry-After, light routes stay fast',
      runs: [
        {
          name: 'burst (defaults)',
          env: DEFAULT_SETTINGS,
          steps: [
            {
              label: full ? '1000 in 2 s' : '300 in 1 s',
              offeredGenerationsPerSecond: full ? 500 : 300,
              warmupS: 0,
              workload: { durationMs: s(8, 30), burst: full ? { count: 1000, overMs: 2000 } : { count: 300, overMs: 1000 }, generations: { ratePerSecond: 0, waitShare: 0, pollMs: 2000, downloadShare: 0 }, background: PROBES },
            },
          ],
        },
      ],
    }),
    mixed: () => ({
      name: 'mixed',
      description: 'the product mix at the recommended settings: half the users wait (Prefer: wait), half poll every 2 s; downloads, history, status, palette uploads',
      runs: [
        {
          name: 'mixed',
          env: RECOMMENDED_SETTINGS,
          steps: [mixedStep(full ? 10 : 5, s(10, 120), full ? 30 : 4)],
        },
      ],
    }),
    soak: () => {
      const durationMs = (opts.soakSeconds ?? (full ? 900 : 12)) * 1000 * (opts.soakSeconds ? 1 : opts.scale);
      return {
        name: 'soak',
        description: 'the mixed workload held for a long time: memory must stay flat (no growth trend) once the in-flight count is steady',
        runs: [{ name: 'soak', env: RECOMMENDED_SETTINGS, steps: [mixedStep(opts.soakRate ?? (full ? 10 : 5), durationMs, full ? 60 : 4)] }],
      };
    },
    palette: () => {
      const uploads = opts.paletteRate ?? (full ? 30 : 15);
      const step = (): StepPlan => ({
        label: `${uploads} uploads/s + ${full ? 4 : 3} gen/s`,
        offeredGenerationsPerSecond: full ? 4 : 3,
        warmupS: full ? 10 : 2,
        workload: {
          durationMs: s(6, 60),
          generations: { ratePerSecond: full ? 4 : 3, waitShare: 1, pollMs: 2000, downloadShare: 0 },
          background: { ...PROBES, palette: uploads },
        },
      });
      return {
        name: 'palette',
        description: 'the replaced system\'s finding, reproduced: the same palette-heavy load with palette work on the main thread (PALETTE_MODE=inline) and in the worker pool',
        runs: [
          { name: 'palette inline (main thread)', env: { ...RECOMMENDED_SETTINGS, PALETTE_MODE: 'inline' }, steps: [step()] },
          { name: 'palette pool (worker threads)', env: { ...RECOMMENDED_SETTINGS, PALETTE_MODE: 'pool' }, steps: [step()] },
          // One worker leaves a core to the event loop; the full run measures whether that pays.
          ...(full ? [{ name: 'palette pool, 1 worker', env: { ...RECOMMENDED_SETTINGS, PALETTE_MODE: 'pool', PALETTE_WORKERS: '1' }, steps: [step()] }] : []),
        ],
      };
    },
    // Run by distributed.ts (its own services, nginx, PostgreSQL and Redis), not as steps of one service.
    distributed: () => ({ name: 'distributed', description: DISTRIBUTED_DESCRIPTION, runs: [] }),
    // Run by overload.ts (its second phase's rate comes from its first), not as fixed steps.
    overload: () => ({ name: 'overload', description: OVERLOAD_DESCRIPTION, runs: [] }),
    moonshot: () => ({
      name: 'moonshot',
      description: `the target to beat: ${opts.moonshotRate} generations/s of 1024² images with the semaphore raised, Prefer: wait=60, plus light probes`,
      runs: [
        {
          name: 'moonshot',
          env: UNBOUNDED_SETTINGS,
          steps: [
            {
              label: `${opts.moonshotRate}/s`,
              offeredGenerationsPerSecond: opts.moonshotRate,
              warmupS: full ? 30 : 6,
              workload: { durationMs: s(12, 120), generations: { ratePerSecond: opts.moonshotRate, waitShare: 1, pollMs: 2000, downloadShare: 0 }, background: PROBES },
            },
          ],
        },
      ],
    }),
  };
  return opts.scenarios.map((name) => plans[name]());
}

function mixedStep(rate: number, durationMs: number, warmupS: number): StepPlan {
  return {
    label: `${rate} gen/s mixed`,
    offeredGenerationsPerSecond: rate,
    warmupS,
    workload: { durationMs, generations: { ratePerSecond: rate, waitShare: 0.5, pollMs: 2000, downloadShare: 0.5 }, background: MIXED_BACKGROUND },
  };
}

// ------------------------------------------------------------------------------------------------
// Results
// ------------------------------------------------------------------------------------------------

export interface StepResult {
  label: string;
  durationS: number;
  warmupS: number;
  /** Seconds since the run's sampler started: where this step lies on the run's time axis. */
  fromT: number;
  toT: number;
  offered: { generationsPerSecond: number; requestsSent: number };
  achieved: {
    /** From the service's pipeline_generations_total over the steady window. */
    generationsFinishedPerSecond: number | null;
    generationsSucceededPerSecond: number | null;
    /** Every answered request of the step (all routes, any status) per second. */
    requestsPerSecond: number;
  };
  /** p50/p95/p99 per route, with outcomes by status and error code. */
  routes: ReturnType<RouteRecorder['summary']>;
  lightRoutesLatencyMs: LatencySummary;
  /** [seconds on the run's time axis, p99 of the light routes answered in that second]. */
  lightP99BySecond?: [number, number | null][];
  errors: Record<string, number>;
  generations: GenerationOutcomes | null;
  service: ResourceSummary;
  /** Service CPU per finished generation against the floor of the same run (floor.ts); absent without a floor. */
  cpuPerGeneration?: CpuPerGeneration;
  verdict: { lightP99Under50ms: boolean; onlyDeliberateErrors: boolean; unexpectedErrors: Record<string, number> };
}

/** Target of issue #15: the service spends at most this many times the floor per generation. */
export const CPU_FLOOR_TARGET_RATIO = 1.5;

export interface CpuPerGeneration {
  /** All of the service's threads (/proc) over the steady window, per finished generation, ms. */
  serviceMs: number;
  /** Decoding the same answer and image with nothing else (JSON + base64 + sharp decode and shrink), ms. */
  floorMs: number;
  ratio: number;
  target: number;
  met: boolean;
}

export function cpuPerGenerationOf(serviceMs: number | null, floor: Pick<FloorResult, 'floorMs'> | undefined): CpuPerGeneration | undefined {
  if (serviceMs === null || !floor || !(floor.floorMs > 0)) return undefined;
  const ratio = Math.round((serviceMs / floor.floorMs) * 100) / 100;
  return { serviceMs, floorMs: floor.floorMs, ratio, target: CPU_FLOOR_TARGET_RATIO, met: ratio <= CPU_FLOOR_TARGET_RATIO };
}

export interface ResourceSummary {
  cpuPctMean: number | null;
  cpuPctMax: number | null;
  emulatorCpuPctMean: number | null;
  harnessCpuPctMean: number | null;
  /** Worst per-second p99 of the load generator's own event-loop delay, ms: its measurement error bar. */
  harnessEventLoopDelayP99Ms: number | null;
  rssMbPeak: number | null;
  heapUsedMbPeak: number | null;
  /** Worst per-second p99 of the event-loop delay, minus the monitor's 10 ms resolution. */
  eventLoopDelayP99Ms: number | null;
  eventLoopDelayMaxMs: number | null;
  eventLoopUtilizationMean: number | null;
  /** Share of wall time the main thread spent in GC pauses over the steady window, % (major ones alone). */
  gcPct: number | null;
  gcMajorPct: number | null;
  geminiInFlightMean: number | null;
  geminiInFlightMax: number | null;
  geminiWaitingMax: number | null;
  queueDepthMax: number | null;
  paletteQueueMax: number | null;
  paletteWaitingMax: number | null;
  load1: { start: number | null; end: number | null };
  /** Mean CPU of the whole machine and of everything else on it (other people's work), % of one core. */
  machineCpuPctMean: number | null;
  othersCpuPctMean: number | null;
  /**
   * CPU per finished generation over the steady window (ms; the light probes' share included):
   * all of the service's threads (/proc), its event loop alone (utilization), the emulator and the
   * load generator. Null when nothing finished.
   */
  perGenerationMs: {
    service: number | null;
    /** Event-loop busy time (utilization: includes time the thread waited for a core). */
    eventLoop: number | null;
    /** CPU time by thread role (/proc): what each generation really costs, contention aside. */
    mainThreadCpu: number | null;
    paletteWorkersCpu: number | null;
    libvipsCpu: number | null;
    libuvCpu: number | null;
    v8HelpersCpu: number | null;
    emulator: number | null;
    loadGenerator: number | null;
  };
  /** Mean CPU by thread role, % of one core. */
  threadCpuPct: { main: number | null; workers: number | null; libvips: number | null; libuv: number | null; v8: number | null; other: number | null };
}

export interface MemoryTrend {
  windowS: number;
  rssSlopeMbPerMin: number | null;
  /** RSS slope in each third of the window: a plateauing allocator shows falling values. */
  rssSlopeByThirdMbPerMin: (number | null)[];
  heapSlopeMbPerMin: number | null;
  rssFirstHalfMeanMb: number | null;
  rssSecondHalfMeanMb: number | null;
  /** RSS slope over the second half: the pace once the allocators have warmed up. */
  rssSecondHalfSlopeMbPerMin: number | null;
  /**
   * The same for the floors: each minute's lowest RSS and JS heap, i.e. what the process keeps
   * right after its garbage collections (V8 runs a mark-compact every ≈ 10–15 s under the soak).
   * The means above also move with how much garbage V8 lets pile up between collections, which its
   * heuristics vary over minutes; a leak raises the floor.
   */
  rssFloorSecondHalfSlopeMbPerMin: number | null;
  heapFloorSecondHalfSlopeMbPerMin: number | null;
  /** What a day at the floor's second-half pace would add. */
  rssPerDayMb: number | null;
  /**
   * No growth trend: over the second half, neither RSS's floor nor the JS heap's rises beyond
   * what the Buffers of the images in flight make it swing (≤ 0.2 MB/min, < 300 MB a day). A soak
   * shorter than ≈ 30 minutes rarely passes: its second half still holds the allocators' warm-up,
   * and it is too short to tell a plateau from a slow leak.
   */
  bounded: boolean;
}

/** Floor slope over a soak's second half below which it counts as flat (see MemoryTrend.bounded). */
export const FLAT_MB_PER_MIN = 0.2;

export interface SaturationResult {
  connections: number;
  durationS: number;
  requestsPerSecond: number;
  latencyMs: { p50: number; p90: number; p99: number; max: number };
  non2xx: number;
  errors: number;
  timeouts: number;
}

export interface RunResult {
  name: string;
  env: Record<string, string>;
  steps: StepResult[];
  saturation?: SaturationResult;
  ticks: Tick[];
  memoryTrend: MemoryTrend | null;
  /** With --memory-detail: where the memory of the last step's window went, kind by kind. */
  memoryDetail?: MemoryDetail;
  profiles: ProfileSummary[];
  maxArrivalLagMs: number;
  dropped: number;
}

export interface ScenarioResult {
  name: ScenarioName;
  description: string;
  runs: RunResult[];
  /** The distributed scenario's own results (its runs are not steps of one service; see distributed.ts). */
  distributed?: DistributedResult;
  /** The overload scenario's own results (a ramp, then 2× its sustainable rate; see overload.ts). */
  overload?: OverloadResult;
}

export interface RunContext {
  opts: LoadOptions;
  emulator: { url: string; pid: number } | undefined;
  prompts: string[];
  paletteUpload: { body: Buffer; contentType: string };
  /** The CPU floor measured at the start of this harness run (main.ts), if any. */
  floor?: FloorResult;
  workDir: string;
  log: (line: string) => void;
}

/** Errors that are the design working: backpressure with Retry-After, not failure. */
const DELIBERATE = /^(429 (QUEUE_FULL|RATE_LIMITED)|503 PALETTE_BUSY)$/;
/** Generation failures caused by the faults the emulator injects (Gemini 429s after retries, hangs). */
const INJECTED_FAILURES = /^failed (GEMINI_RATE_LIMITED|GEMINI_TIMEOUT)$/;

export async function runScenario(plan: ScenarioPlan, ctx: RunContext): Promise<ScenarioResult> {
  const runs: RunResult[] = [];
  for (const run of plan.runs) runs.push(await runOne(plan, run, ctx));
  return { name: plan.name, description: plan.description, runs };
}

async function runOne(plan: ScenarioPlan, run: RunPlan, ctx: RunContext): Promise<RunResult> {
  const { opts } = ctx;
  const env = { ...run.env, ...opts.serviceEnv };
  const runDir = mkdtempSync(join(ctx.workDir, `${plan.name}-`));
  const profileDir = join(runDir, 'cpu-profiles');
  const probeFile = join(runDir, PROBE_FILE);
  const probe = opts.memoryDetail && !opts.target;
  let target: { baseUrl: string; metricsUrl: string; pid?: number; stop?: () => Promise<void> };
  if (opts.target) {
    target = opts.target;
    ctx.log(`  ${run.name}: against ${opts.target.baseUrl} (its own settings; ${JSON.stringify(env)} not applied)`);
  } else {
    if (opts.cpuProfile) mkdirSync(profileDir, { recursive: true });
    const service = await startService({
      geminiUrl: ctx.emulator!.url,
      dataDir: join(runDir, 'data'),
      env: probe ? { ...env, MEMORY_PROBE_OUT: probeFile } : env,
      logFile: join(runDir, 'service.log'),
      cpuProfileDir: opts.cpuProfile ? profileDir : undefined,
      nodeArgs: probe ? [...opts.serviceNodeArgs, `--import=${PROBE_MODULE}`] : opts.serviceNodeArgs,
    });
    target = { baseUrl: service.baseUrl, metricsUrl: service.metricsUrl, pid: service.pid, stop: () => service.stop(30_000) };
    ctx.log(`  ${run.name}: service pid ${service.pid} ${JSON.stringify(env)}${opts.serviceNodeArgs.length ? ` node ${opts.serviceNodeArgs.join(' ')}` : ''} (logs: ${service.logFile})`);
  }

  const steps: StepResult[] = [];
  const driver = new HttpDriver(target.baseUrl, new RouteRecorder());
  const traffic = new TrafficRunner(driver, ctx.prompts, ctx.paletteUpload);
  const sampler = new Sampler({ metricsUrl: target.metricsUrl, pid: target.pid, emulatorPid: ctx.emulator?.pid }, () => driver.inFlight);
  const t0 = performance.now();
  const wallT0 = Date.now();
  const now = () => (performance.now() - t0) / 1000;
  sampler.start();
  let saturation: SaturationResult | undefined;
  const pending: { plan: StepPlan; recorder: RouteRecorder; fromT: number; toT: number; outcomes: () => GenerationOutcomes; load1Start: number | null; load1End: number | null }[] = [];
  try {
    // Every run starts with a few finished generations (status, history and image traffic need
    // some) and a few seconds of unrecorded traffic through every route: the numbers are those of
    // a warm process, not of V8 compiling the request path during the first burst.
    const seeded = await seed(driver, ctx.prompts);
    traffic.seed(seeded.ids, seeded.images);
    await traffic.run({ durationMs: ctx.opts.profile === 'full' ? 10_000 : 2_000, background: WARMUP_TRAFFIC }, new RouteRecorder());
    for (const step of run.steps) {
      const recorder = new RouteRecorder();
      const fromT = now();
      const load1Start = loadAverage()?.[0] ?? null;
      ctx.log(`    ${step.label} for ${step.workload.durationMs / 1000} s`);
      const handle = await traffic.run(step.workload, recorder);
      pending.push({ plan: step, recorder, fromT, toT: now(), outcomes: handle.outcomes, load1Start, load1End: loadAverage()?.[0] ?? null });
    }
    if (run.saturation) saturation = await saturate(target.baseUrl, run.saturation, traffic.seededIds(), ctx.log);
  } finally {
    await traffic.stop();
    await sampler.stop();
    await target.stop?.();
  }
  for (const p of pending) {
    const step = summarizeStep(p.plan, p.recorder, sampler.ticks, p.fromT, p.toT, p.outcomes(), { start: p.load1Start, end: p.load1End });
    const cpu = cpuPerGenerationOf(step.service.perGenerationMs.service, ctx.floor);
    steps.push(cpu ? { ...step, cpuPerGeneration: cpu } : step);
  }
  const profiles = opts.cpuProfile && !opts.target ? summarizeProfiles(profileDir) : [];
  const last = pending.at(-1);
  const memoryTrend = last ? memoryTrendOf(sampler.ticks, last.fromT + last.plan.warmupS, last.toT) : null;
  const memoryDetail =
    probe && last ? (memoryDetailOf(readProbeSamples(probeFile), wallT0 + (last.fromT + last.plan.warmupS) * 1000, wallT0 + last.toT * 1000, probeFile) ?? undefined) : undefined;
  if (!opts.target) rmSync(join(runDir, 'data'), { recursive: true, force: true });
  return { name: run.name, env, steps, saturation, ticks: sampler.ticks, memoryTrend, memoryDetail, profiles, maxArrivalLagMs: round(traffic.maxArrivalLagMs, 0) ?? 0, dropped: driver.dropped };
}

/**
 * autocannon at full speed (closed loop) on the read routes: the most requests per second the
 * service answers, and the latency it takes to get there. Its `overallRate` mode is not used for
 * latency at a given rate: it releases each second's quota in one burst per connection, which
 * measures the burst rather than the rate.
 */
async function saturate(baseUrl: string, plan: SaturationPlan, ids: string[], log: (line: string) => void): Promise<SaturationResult> {
  log(`    autocannon, ${plan.connections} connections at full speed for ${plan.durationS} s`);
  const result = await autocannon({
    url: baseUrl,
    connections: plan.connections,
    duration: plan.durationS,
    timeout: 10,
    requests: [
      { method: 'GET', path: `/api/v1/generations/${ids[0]}` },
      { method: 'GET', path: `/api/v1/generations/${ids[1 % ids.length]}` },
      { method: 'GET', path: `/api/v1/generations/${ids[2 % ids.length]}` },
      { method: 'GET', path: '/api/v1/generations?limit=20' },
    ],
  });
  return {
    connections: plan.connections,
    durationS: plan.durationS,
    requestsPerSecond: round(result.requests.average, 0) ?? 0,
    latencyMs: { p50: result.latency.p50, p90: result.latency.p90, p99: result.latency.p99, max: result.latency.max },
    non2xx: result.non2xx,
    errors: result.errors,
    timeouts: result.timeouts,
  };
}

/** A few finished generations (the emulator answers at once for these prompts) for the read routes. */
export async function seed(driver: HttpDriver, prompts: string[]): Promise<{ ids: string[]; images: string[] }> {
  const ids: string[] = [];
  for (let i = 0; i < 12; i++) {
    const answer = await driver.send('createWait', 'POST', '/api/v1/generations', {
      body: JSON.stringify({ prompt: `${prompts[i % prompts.length]} [emulator:latency=0]` }),
      headers: { 'content-type': 'application/json', prefer: 'wait=30' },
      record: false,
    });
    const id = (JSON.parse(answer.body.toString('utf8') || '{}') as { id?: string }).id;
    if (id) ids.push(id);
  }
  if (ids.length === 0) throw new Error('could not create any generation to read');
  return { ids, images: ids.map((id) => `/api/v1/generations/${id}/images/0`) };
}

function ticksIn(ticks: Tick[], from: number, to: number): Tick[] {
  return ticks.filter((t) => t.t >= from && t.t <= to + 0.5);
}

export function summarizeStep(
  plan: StepPlan,
  recorder: RouteRecorder,
  ticks: Tick[],
  fromT: number,
  toT: number,
  outcomes: GenerationOutcomes | null,
  load1: { start: number | null; end: number | null },
): StepResult {
  const durationS = toT - fromT;
  const warm = Math.min(plan.warmupS, durationS / 2);
  const window = ticksIn(ticks, fromT + warm, toT);
  const whole = ticksIn(ticks, fromT, toT);
  const rateOf = (pick: (t: Tick) => number | null) => {
    const points = window.filter((t) => pick(t) !== null);
    if (points.length < 2) return null;
    const a = points[0];
    const b = points[points.length - 1];
    return b.t > a.t ? round((pick(b)! - pick(a)!) / (b.t - a.t), 3) : null;
  };
  const col = (ts: Tick[], pick: (t: Tick) => number | null) => ts.map(pick).filter((v): v is number => v !== null);
  const routes = recorder.summary();
  const answered = Object.values(routes).reduce((n, r) => n + r.latencyMs.count, 0);
  const errors = recorder.errors();
  const unexpected: Record<string, number> = {};
  for (const [key, n] of Object.entries(errors)) if (!DELIBERATE.test(key.split(' → ')[1] ?? '')) unexpected[key] = n;
  for (const [key, n] of Object.entries(outcomes?.finished ?? {})) {
    if (key !== 'succeeded' && !INJECTED_FAILURES.test(key)) unexpected[`generation ${key}`] = n;
  }
  const light = recorder.light.summary();
  const eld = col(whole, (t) => t.eventLoopDelayP99Ms);
  return {
    label: plan.label,
    durationS: round(durationS, 1) ?? 0,
    warmupS: warm,
    fromT: round(fromT, 1) ?? 0,
    toT: round(toT, 1) ?? 0,
    offered: { generationsPerSecond: plan.offeredGenerationsPerSecond, requestsSent: answered },
    achieved: {
      generationsFinishedPerSecond: rateOf((t) => t.finished),
      generationsSucceededPerSecond: rateOf((t) => t.succeeded),
      requestsPerSecond: round(answered / Math.max(durationS, 0.001), 1) ?? 0,
    },
    routes,
    lightRoutesLatencyMs: light,
    lightP99BySecond: [...recorder.lightBySecond].sort((a, b) => a[0] - b[0]).map(([second, values]) => [round(fromT + second + 0.5, 1) ?? 0, p99(values)]),
    errors,
    generations: outcomes,
    service: {
      cpuPctMean: seriesStats(col(window, (t) => t.cpuPct)).mean,
      cpuPctMax: seriesStats(col(window, (t) => t.cpuPct)).max,
      emulatorCpuPctMean: seriesStats(col(window, (t) => t.emulatorCpuPct)).mean,
      harnessCpuPctMean: seriesStats(col(window, (t) => t.harnessCpuPct)).mean,
      harnessEventLoopDelayP99Ms: seriesStats(col(whole, (t) => t.harnessEventLoopDelayP99Ms ?? null)).p99,
      rssMbPeak: seriesStats(col(whole, (t) => t.rssMb)).max,
      heapUsedMbPeak: seriesStats(col(whole, (t) => t.heapUsedMb)).max,
      eventLoopDelayP99Ms: eld.length ? round(Math.max(...eld) - ELD_RESOLUTION_MS, 1) : null,
      eventLoopDelayMaxMs: seriesStats(col(whole, (t) => t.eventLoopDelayMaxMs)).max,
      eventLoopUtilizationMean: seriesStats(col(window, (t) => t.eventLoopUtilization)).mean,
      gcPct: pct(rateOf((t) => t.gcSeconds)),
      gcMajorPct: pct(rateOf((t) => t.gcMajorSeconds)),
      geminiInFlightMean: seriesStats(col(window, (t) => t.geminiInFlight)).mean,
      geminiInFlightMax: seriesStats(col(whole, (t) => t.geminiInFlight)).max,
      geminiWaitingMax: seriesStats(col(whole, (t) => t.geminiWaiting)).max,
      queueDepthMax: seriesStats(col(whole, (t) => t.queueDepth)).max,
      paletteQueueMax: seriesStats(col(whole, (t) => t.paletteQueue)).max,
      paletteWaitingMax: seriesStats(col(whole, (t) => t.paletteWaiting)).max,
      load1,
      machineCpuPctMean: seriesStats(col(window, (t) => t.machineCpuPct)).mean,
      othersCpuPctMean: seriesStats(col(window, (t) => t.othersCpuPct)).mean,
      perGenerationMs: perGeneration(window, rateOf((t) => t.finished)),
      threadCpuPct: {
        main: seriesStats(col(window, (t) => t.threadCpuPct?.main ?? null)).mean,
        workers: seriesStats(col(window, (t) => t.threadCpuPct?.workers ?? null)).mean,
        libvips: seriesStats(col(window, (t) => t.threadCpuPct?.libvips ?? null)).mean,
        libuv: seriesStats(col(window, (t) => t.threadCpuPct?.libuv ?? null)).mean,
        v8: seriesStats(col(window, (t) => t.threadCpuPct?.v8 ?? null)).mean,
        other: seriesStats(col(window, (t) => t.threadCpuPct?.other ?? null)).mean,
      },
    },
    verdict: {
      lightP99Under50ms: light.p99 !== null && light.p99 < 50,
      onlyDeliberateErrors: Object.keys(unexpected).length === 0,
      unexpectedErrors: unexpected,
    },
  };
}

function pct(secondsPerSecond: number | null): number | null {
  return secondsPerSecond === null ? null : round(secondsPerSecond * 100, 1);
}

function perGeneration(window: Tick[], finishedPerSecond: number | null): ResourceSummary['perGenerationMs'] {
  const per = (pick: (t: Tick) => number | null, scale: number) => {
    const mean = seriesStats(window.map(pick).filter((v): v is number => v !== null)).mean;
    return mean === null || !finishedPerSecond || finishedPerSecond <= 0 ? null : round((mean * scale) / finishedPerSecond, 1);
  };
  // CPU % of one core → ms of CPU per second is ×10; utilization 0..1 → ms per second is ×1000.
  return {
    service: per((t) => t.cpuPct, 10),
    eventLoop: per((t) => t.eventLoopUtilization, 1000),
    mainThreadCpu: per((t) => t.threadCpuPct?.main ?? null, 10),
    paletteWorkersCpu: per((t) => t.threadCpuPct?.workers ?? null, 10),
    libvipsCpu: per((t) => t.threadCpuPct?.libvips ?? null, 10),
    libuvCpu: per((t) => t.threadCpuPct?.libuv ?? null, 10),
    v8HelpersCpu: per((t) => t.threadCpuPct?.v8 ?? null, 10),
    emulator: per((t) => t.emulatorCpuPct, 10),
    loadGenerator: per((t) => t.harnessCpuPct, 10),
  };
}

function p99(values: number[]): number | null {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted.length ? round(sorted[Math.min(sorted.length - 1, Math.ceil(0.99 * sorted.length) - 1)], 1) : null;
}

export function memoryTrendOf(ticks: Tick[], from: number, to: number): MemoryTrend | null {
  const window = ticksIn(ticks, from, to).filter((t) => t.rssMb !== null);
  // Below a minute the "trend" is the ramp-up of in-flight work, not a leak.
  if (window.length < 60) return null;
  const start = window[0].t;
  const span = window[window.length - 1].t - start;
  const mean = (ts: Tick[]) => ts.reduce((a, t) => a + t.rssMb!, 0) / Math.max(1, ts.length);
  const secondHalf = window.filter((t) => t.t >= start + span / 2);
  const first = mean(window.filter((t) => t.t < start + span / 2));
  const second = mean(secondHalf);
  const slope = (ts: Tick[], pick: (t: Tick) => number | null) => slopePerMinute(ts.filter((t) => pick(t) !== null).map((t) => [t.t, pick(t)!]));
  const thirds = [0, 1, 2].map((i) => slope(window.filter((t) => t.t >= start + (i * span) / 3 && t.t <= start + ((i + 1) * span) / 3), (t) => t.rssMb));
  const heapSlope = slope(window, (t) => t.heapUsedMb);
  const secondHalfSlope = slope(secondHalf, (t) => t.rssMb);
  const rssFloorSlope = slopePerMinute(floorsPerMinute(secondHalf, (t) => t.rssMb));
  const heapFloorSlope = slopePerMinute(floorsPerMinute(secondHalf, (t) => t.heapUsedMb));
  return {
    windowS: round(span, 0) ?? 0,
    rssSlopeMbPerMin: slope(window, (t) => t.rssMb),
    rssSlopeByThirdMbPerMin: thirds,
    heapSlopeMbPerMin: heapSlope,
    rssFirstHalfMeanMb: round(first, 1),
    rssSecondHalfMeanMb: round(second, 1),
    rssSecondHalfSlopeMbPerMin: secondHalfSlope,
    rssFloorSecondHalfSlopeMbPerMin: rssFloorSlope,
    heapFloorSecondHalfSlopeMbPerMin: heapFloorSlope,
    rssPerDayMb: rssFloorSlope === null ? null : round(rssFloorSlope * 1440, 0),
    bounded: rssFloorSlope !== null && rssFloorSlope <= FLAT_MB_PER_MIN && heapFloorSlope !== null && heapFloorSlope <= FLAT_MB_PER_MIN,
  };
}

/** Each whole minute's lowest value, as (seconds, value) at the minute's middle. */
function floorsPerMinute(ticks: Tick[], pick: (t: Tick) => number | null): [number, number][] {
  const minutes = new Map<number, number[]>();
  const start = ticks[0]?.t ?? 0;
  for (const t of ticks) {
    const value = pick(t);
    if (value === null) continue;
    const minute = Math.floor((t.t - start) / 60);
    const values = minutes.get(minute) ?? [];
    values.push(value);
    minutes.set(minute, values);
  }
  // A minute cut short by the window's end would put a half-minute's floor among whole ones.
  return [...minutes]
    .filter(([, values]) => values.length >= 45)
    .map(([minute, values]) => [start + minute * 60 + 30, Math.min(...values)]);
}

/** The light routes named in the report, for its tables. */
export const LIGHT_ROUTE_NAMES = LIGHT_ROUTES.map((r) => ROUTES[r]);
