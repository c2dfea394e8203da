/**
 * The distributed scenario of `npm run load` (`--scenarios=distributed`): two service instances
 * (ROLE=all) behind nginx, on a fresh PostgreSQL database and a private Redis (a unique key prefix
 * too), with a Gemini emulator of their own. A steady generation load goes through nginx; in the
 * middle of it one instance is SIGKILLed while it holds jobs, and later started again. Before it, the
 * same load against one embedded instance (SQLite, in-process queue) behind the same kind of nginx,
 * with the same emulator settings, gives the CPU per generation to compare with.
 *
 * What it answers (the `distributed` summary, see docs/scaling.md):
 * - generations lost: in the database after the run, accepted but not final, or failed INTERRUPTED;
 * - the longest wait for a takeover, from the kill to the taken-over job's next start, from BullMQ's
 *   own record of each job (`processedOn` is written each time a worker starts it, `stalledCounter`
 *   counts its takeovers), and to its Gemini call's new start, from the image's record in PostgreSQL
 *   (written at its end, minus the durations of its stages);
 * - the emulator's most concurrent calls (its `GET /stats`) against the global GEMINI_MAX_CONCURRENCY;
 * - CPU per generation of the services (from /proc), and beside it PostgreSQL (the backends of this
 *   run's database), Redis (the private server), nginx, the emulator and the load generator, over the
 *   same measured window of each run (the distributed one before its kill).
 */
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { DatabaseSync } from 'node:sqlite';
import { setTimeout as sleep } from 'node:timers/promises';
import { Queue } from 'bullmq';
import { Client } from 'pg';
import { parseLatencySpec, type LatencySpec } from '../../src/config/emulator-env';
import type { EmulatorStats } from '../../src/gemini/emulator/emulator.server';
import { createTestDatabase, TEST_POSTGRES_URL, type TestDatabase } from '../support/postgres';
import { startRedisServer, uniquePrefix, type PrivateRedis } from '../support/redis';
import { summarizeProfiles, type ProfileSummary } from './cpu-profile';
import { HttpDriver, RouteRecorder } from './http-driver';
import { findNginx, startNginx, summarizeBalancerLog, UPSTREAM_KEEPALIVE_S, type BalancerLogSummary, type NginxProcess } from './nginx';
import type { DistributedRunName, LoadOptions } from './options';
import { emulatorStats, loadAverage, readMachineCpu, readProc, startEmulator, startService, warmEmulator, type EmulatorProcess, type ServiceProcess } from './processes';
import { parsePrometheusText, sumOf } from './prometheus-text';
import { seed } from './scenarios';
import { round } from './stats';
import { TrafficRunner, type BackgroundTraffic, type GenerationOutcomes, type GenerationTraffic } from './traffic';

// ------------------------------------------------------------------------------------------------
// Plan
// ------------------------------------------------------------------------------------------------

export interface DistributedPlan {
  runs: DistributedRunName[];
  /** Generations offered per second (Poisson arrivals), the same in every run. */
  rate: number;
  /** GEMINI_MAX_CONCURRENCY: global over the instances with Redis; the one instance's own otherwise. */
  geminiLimit: number;
  queueLockMs: number;
  /** The emulator's EMULATOR_LATENCY, and its fault rates. */
  latency: string;
  rate429: number;
  hangRate: number;
  generations: GenerationTraffic;
  background: Partial<BackgroundTraffic>;
  /** Seconds of traffic before the measured window, the window itself, and after the kill. */
  warmupS: number;
  windowS: number;
  afterKillS: number;
  /** Seconds after the kill at which the killed instance starts again; null: it stays down. */
  restartAfterS: number | null;
  /** Seconds of rest after the start, for the instances' idle CPU. */
  idleS: number;
  /** How long the kill may wait for its victim to hold a job. */
  victimWaitMs: number;
  /** After the arrivals: how long to wait for every generation to reach its final state. */
  settleMs: number;
  /** Extra environment of every instance (the harness's --env), on top of the scenario's. */
  serviceEnv: Record<string, string>;
}

/** The client mix: half wait (Prefer: wait=60), half poll every second; half download their image. */
const GENERATIONS: Omit<GenerationTraffic, 'ratePerSecond'> = { waitShare: 0.5, pollMs: 1000, downloadShare: 0.5 };
/** A little reading beside the generations (history pages, liveness), as users do. */
const BACKGROUND: Partial<BackgroundTraffic> = { live: 2, history: 1 };

export function meanLatencyMs(spec: LatencySpec): number {
  switch (spec.kind) {
    case 'fixed':
      return spec.ms;
    case 'uniform':
      return (spec.minMs + spec.maxMs) / 2;
    case 'lognormal':
      // The cap cuts a little of the tail off; close enough for sizing.
      return Math.min(spec.maxMs, spec.medianMs * Math.exp((spec.sigma * spec.sigma) / 2));
  }
}

export function maxLatencyMs(spec: LatencySpec): number {
  return spec.kind === 'fixed' ? spec.ms : spec.maxMs;
}

/**
 * The global Gemini limit a rate keeps about 80 % busy (rate × mean latency / 0.8): high enough that
 * generations do not pile up, low enough that the limit is reached when arrivals bunch up and when
 * the killed instance's leases still hold slots, i.e. that "never above the limit" is tested.
 */
export function defaultGeminiLimit(rate: number, spec: LatencySpec): number {
  return Math.max(2, Math.ceil((rate * meanLatencyMs(spec)) / 1000 / 0.8));
}

export function planDistributed(opts: LoadOptions): DistributedPlan {
  const full = opts.profile === 'full';
  const d = opts.distributed;
  const latency = d.latency ?? (full ? 'lognormal:median=6000,sigma=0.6,max=40000' : 'lognormal:median=3000,sigma=0.5,max=20000');
  const spec = parseLatencySpec(latency);
  if (typeof spec === 'string') throw new Error(`--distributed-latency: ${spec}`);
  const rate = d.rate ?? (full ? 8 : 4);
  const scaled = (short: number, long: number) => Math.round((full ? long : short) * opts.scale);
  return {
    runs: d.runs,
    rate,
    geminiLimit: d.limit ?? defaultGeminiLimit(rate, spec),
    queueLockMs: d.queueLockMs,
    latency,
    rate429: opts.rate429,
    hangRate: opts.hangRate,
    generations: { ratePerSecond: rate, ...GENERATIONS },
    background: BACKGROUND,
    warmupS: scaled(15, 30),
    windowS: scaled(40, 150),
    afterKillS: scaled(45, 150),
    restartAfterS: d.restart ? scaled(20, 60) : null,
    idleS: 5,
    victimWaitMs: 15_000,
    // A hung call ends at GEMINI_TIMEOUT_MS (the latency's cap + 10 s); its poll or wait after that.
    settleMs: maxLatencyMs(spec) + 10_000 + 60_000,
    serviceEnv: opts.serviceEnv,
  };
}

// ------------------------------------------------------------------------------------------------
// Results
// ------------------------------------------------------------------------------------------------

/** CPU seconds by process group over a span of time. */
export interface CpuSpan {
  seconds: number;
  /** Generations the services finished in it (their pipeline_generations_total). */
  finished: number;
  /** CPU seconds per group. */
  cpuSeconds: Record<CpuGroup, number>;
  /** The whole machine, all cores (other people's work on a shared machine included). */
  machineCpuSeconds: number | null;
}

export type CpuGroup = 'services' | 'postgres' | 'postgresServer' | 'redis' | 'nginx' | 'emulator' | 'loadGenerator';
export const CPU_GROUPS: CpuGroup[] = ['services', 'postgres', 'postgresServer', 'redis', 'nginx', 'emulator', 'loadGenerator'];

export interface TakeoverRecord {
  jobId: string;
  takeovers: number;
  /** From the kill to the job's next start on another worker (BullMQ's processedOn), ms. */
  jobRestartMs: number | null;
  /**
   * From the kill to its Gemini call's new start (the image record's end minus its stages), ms; null
   * when the call did not run again (no stage time, or the image was recorded before the kill).
   */
  geminiRestartMs: number | null;
  /**
   * The victim recorded the image before it died but not the job's completion: the worker that took
   * the job over found the record and finished the generation from it, without a new Gemini call.
   */
  recordedBeforeKill: boolean;
  /** How the image ended. */
  outcome: string;
}

export interface TakeoverSummary {
  /** Jobs another worker took over (BullMQ's stalledCounter > 0). */
  jobs: number;
  longestJobRestartMs: number | null;
  medianJobRestartMs: number | null;
  longestGeminiRestartMs: number | null;
  records: TakeoverRecord[];
}

export interface DistributedRunResult {
  name: DistributedRunName;
  topology: string;
  env: Record<string, string>;
  /** Settings of the emulator process of this run. */
  emulator: { latency: string; rate429: number; hangRate: number; stats: EmulatorStats | null };
  /** Services' CPU at rest for a few seconds after they started, % of one core. */
  idleServicesCpuPct: number | null;
  window: CpuSpan & { perGenerationMs: Record<CpuGroup, number | null> };
  /** From the first arrival to the end of the settling. */
  whole: CpuSpan;
  /** As the clients saw them. */
  generations: GenerationOutcomes;
  /** As the database holds them after the run: "status" or "failed CODE" → count. */
  database: Record<string, number>;
  /** Accepted (in the database) but not final, or failed INTERRUPTED. */
  lost: number;
  routes: { window: ReturnType<RouteRecorder['summary']>; afterKill?: ReturnType<RouteRecorder['summary']> };
  balancer: { window: BalancerLogSummary; afterKill?: BalancerLogSummary };
  kill?: {
    /** Seconds after the first arrival. */
    atS: number;
    victimPid: number;
    /** Image jobs the victim was running when it was killed (its own gauge, read just before). */
    victimActiveJobs: number | null;
    restartedAtS: number | null;
    /** From the restart's spawn to its liveness answering, s. */
    restartTookS: number | null;
    takeover: TakeoverSummary;
    /** `pipeline_jobs_takeovers_total` of the survivor and the restarted instance. */
    takeoversCounted: number | null;
  };
  /** Per second: services' CPU %, the emulator's calls in flight, finished generations (sum of instances). */
  timeline: { t: number; servicesCpuPct: number | null; emulatorInFlight: number | null; finished: number | null; up: number }[];
  /** With --cpu-profile (which costs CPU itself: not for the comparison): where each instance's threads spent it. */
  profiles?: { file: string; busyShare: number; top: ProfileSummary['components'] }[];
  /** An event stream opened through nginx on a generation held by a hung Gemini call, then canceled through nginx. */
  eventStream?: EventStreamProbe;
  load1: { start: number | null; end: number | null };
  maxArrivalLagMs: number;
  /** What the run started (all stopped and removed by its end). */
  resources: { database: string | null; redisPid: number | null; nginxPrefix: string; servicePids: number[]; emulatorPid: number; runDir: string };
}

export interface EventStreamProbe {
  /** From opening the stream to its first event (the current state), ms: an event held back by a buffering proxy would come only at the end. */
  firstEventMs: number | null;
  firstStatus: string | null;
  /** The last event's status once the cancel went through, and how long the stream stayed open. */
  finalStatus: string | null;
  openMs: number | null;
  error?: string;
}

export interface DistributedSummary {
  topology: string;
  settings: { rate: number; geminiLimit: number; queueLockMs: number; latency: string; rate429: number; hangRate: number; windowS: number; afterKillS: number; restartAfterS: number | null };
  lostGenerations: { distributed: number | null; embedded: number | null; target: 0; met: boolean | null };
  takeover: { jobs: number; longestJobRestartMs: number | null; longestGeminiRestartMs: number | null; queueLockMs: number } | null;
  emulatorMaxInFlight: { limit: number; distributed: number | null; embedded: number | null; neverAbove: boolean | null };
  cpuPerGenerationMs: {
    embedded: Record<CpuGroup, number | null> | null;
    distributed: Record<CpuGroup, number | null> | null;
    /** Services only: the target (≤ 1.2). */
    servicesRatio: number | null;
    /** Services + PostgreSQL (this database's backends) + Redis + nginx, against the same for embedded. */
    withDataStoresRatio: number | null;
    target: 1.2;
    met: boolean | null;
  };
  balancer: { passedToNextUpstream: number; gatewayErrors: number } | null;
  /** The distributed run's generations as its clients saw them (a create cut by the kill counts as "other"). */
  clients: Pick<GenerationOutcomes, 'offered' | 'accepted' | 'rejected429' | 'rejectedOther' | 'unfinishedAtEnd'> | null;
}

export interface DistributedResult {
  description: string;
  plan: DistributedPlan;
  runs: DistributedRunResult[];
  summary: DistributedSummary;
}

export const DESCRIPTION =
  'two instances (ROLE=all) behind nginx on one PostgreSQL database and Redis, a steady generation load, one instance SIGKILLed mid-run and started again; ' +
  'before it, the same load against one embedded instance (SQLite, in-process queue) for the CPU comparison';

// ------------------------------------------------------------------------------------------------
// Analysis (pure: tested on known inputs)
// ------------------------------------------------------------------------------------------------

const FINAL = new Set(['succeeded', 'failed', 'canceled']);

/** "status" / "failed CODE" → count, from rows of (status, error_code, n). */
export function statusCounts(rows: { status: string; error_code: string | null; n: number | string }[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const r of rows) {
    const key = r.status === 'failed' || r.status === 'canceled' ? `${r.status} ${r.error_code ?? 'NO_CODE'}` : r.status;
    out[key] = (out[key] ?? 0) + Number(r.n);
  }
  return out;
}

/** Generations in a final state. */
function finalCount(counts: Record<string, number>): number {
  return Object.entries(counts).reduce((sum, [key, n]) => sum + (FINAL.has(key.split(' ')[0]) ? n : 0), 0);
}

/** Generations accepted but never final, or that failed INTERRUPTED (what a lost worker leaves). */
export function lostOf(counts: Record<string, number>): number {
  let lost = 0;
  for (const [key, n] of Object.entries(counts)) {
    const status = key.split(' ')[0];
    if (!FINAL.has(status) || key === 'failed INTERRUPTED') lost += n;
  }
  return lost;
}

export interface JobFacts {
  id: string;
  stalledCounter: number;
  processedOn: number | undefined;
}

export interface ImageFacts {
  createdAt: number;
  geminiMs: number;
  uploadMs: number;
  paletteMs: number;
  status: string;
  errorCode: string | null;
}

/**
 * The jobs taken over after the kill at `killAtMs` (Unix ms), with their waits: to the job's next
 * start (BullMQ's processedOn, written each time a worker starts it), and to its Gemini call's new
 * start (the image record's end minus the stages it reports).
 */
export function takeoversOf(jobs: JobFacts[], images: Map<string, ImageFacts>, killAtMs: number): TakeoverSummary {
  const records: TakeoverRecord[] = [];
  for (const job of jobs) {
    if (job.stalledCounter <= 0) continue;
    const image = images.get(job.id);
    const geminiStart = image ? image.createdAt - image.geminiMs - image.uploadMs - image.paletteMs : undefined;
    const recordedBeforeKill = image !== undefined && image.createdAt <= killAtMs;
    records.push({
      jobId: job.id,
      takeovers: job.stalledCounter,
      jobRestartMs: job.processedOn !== undefined ? job.processedOn - killAtMs : null,
      // A failed call may report no stage time: then its start is unknown.
      geminiRestartMs:
        geminiStart !== undefined && image && image.geminiMs > 0 && !recordedBeforeKill ? Math.round(geminiStart - killAtMs) : null,
      recordedBeforeKill,
      outcome: image ? (image.status === 'succeeded' ? 'succeeded' : `${image.status} ${image.errorCode ?? ''}`.trim()) : 'no image record',
    });
  }
  records.sort((a, b) => (b.jobRestartMs ?? 0) - (a.jobRestartMs ?? 0));
  const restarts = records.map((r) => r.jobRestartMs).filter((v): v is number => v !== null).sort((a, b) => a - b);
  const gemini = records.map((r) => r.geminiRestartMs).filter((v): v is number => v !== null);
  return {
    jobs: records.length,
    longestJobRestartMs: restarts.length ? restarts[restarts.length - 1] : null,
    medianJobRestartMs: restarts.length ? restarts[Math.floor((restarts.length - 1) / 2)] : null,
    longestGeminiRestartMs: gemini.length ? Math.max(...gemini) : null,
    records,
  };
}

/** CPU ms per finished generation for each group of a span; null when nothing finished. */
export function perGeneration(span: CpuSpan): Record<CpuGroup, number | null> {
  return Object.fromEntries(CPU_GROUPS.map((g) => [g, span.finished > 0 ? round((span.cpuSeconds[g] * 1000) / span.finished, 1) : null])) as Record<CpuGroup, number | null>;
}

export function summarize(plan: DistributedPlan, runs: DistributedRunResult[]): DistributedSummary {
  const embedded = runs.find((r) => r.name === 'embedded');
  const distributed = runs.find((r) => r.name === 'distributed');
  const ratio = (a: number | null | undefined, b: number | null | undefined) => (a != null && b != null && b > 0 ? round(a / b, 2) : null);
  const stores = (p: Record<CpuGroup, number | null> | undefined) =>
    p && p.services !== null ? p.services + (p.postgres ?? 0) + (p.redis ?? 0) + (p.nginx ?? 0) : null;
  const servicesRatio = ratio(distributed?.window.perGenerationMs.services, embedded?.window.perGenerationMs.services);
  const maxOf = (r: DistributedRunResult | undefined) => r?.emulator.stats?.maxInFlight ?? null;
  const maxes = [maxOf(embedded), maxOf(distributed)].filter((v): v is number => v !== null);
  return {
    topology: distributed?.topology ?? embedded?.topology ?? '',
    settings: {
      rate: plan.rate,
      geminiLimit: plan.geminiLimit,
      queueLockMs: plan.queueLockMs,
      latency: plan.latency,
      rate429: plan.rate429,
      hangRate: plan.hangRate,
      windowS: plan.windowS,
      afterKillS: plan.afterKillS,
      restartAfterS: plan.restartAfterS,
    },
    lostGenerations: {
      distributed: distributed?.lost ?? null,
      embedded: embedded?.lost ?? null,
      target: 0,
      met: distributed ? distributed.lost === 0 : null,
    },
    takeover: distributed?.kill
      ? {
          jobs: distributed.kill.takeover.jobs,
          longestJobRestartMs: distributed.kill.takeover.longestJobRestartMs,
          longestGeminiRestartMs: distributed.kill.takeover.longestGeminiRestartMs,
          queueLockMs: plan.queueLockMs,
        }
      : null,
    emulatorMaxInFlight: {
      limit: plan.geminiLimit,
      distributed: maxOf(distributed),
      embedded: maxOf(embedded),
      neverAbove: maxes.length ? maxes.every((m) => m <= plan.geminiLimit) : null,
    },
    cpuPerGenerationMs: {
      embedded: embedded?.window.perGenerationMs ?? null,
      distributed: distributed?.window.perGenerationMs ?? null,
      servicesRatio,
      withDataStoresRatio: ratio(stores(distributed?.window.perGenerationMs), stores(embedded?.window.perGenerationMs)),
      target: 1.2,
      met: servicesRatio === null ? null : servicesRatio <= 1.2,
    },
    balancer: distributed
      ? {
          passedToNextUpstream: distributed.balancer.window.passedToNextUpstream + (distributed.balancer.afterKill?.passedToNextUpstream ?? 0),
          gatewayErrors: distributed.balancer.window.gatewayErrors + (distributed.balancer.afterKill?.gatewayErrors ?? 0),
        }
      : null,
    clients: distributed?.generations
      ? (({ offered, accepted, rejected429, rejectedOther, unfinishedAtEnd }) => ({ offered, accepted, rejected429, rejectedOther, unfinishedAtEnd }))(distributed.generations)
      : null,
  };
}

// ------------------------------------------------------------------------------------------------
// Measuring
// ------------------------------------------------------------------------------------------------

/**
 * CPU seconds of groups of processes from /proc, each process counted from when it joined its group
 * (a service's start-up is not part of the load it serves). A process that ends keeps what was last
 * read of it (up to a second of its CPU is missed).
 */
class CpuMeter {
  private readonly procs = new Map<number, { group: CpuGroup; first: number; last: number }>();
  private harnessFirst = process.cpuUsage();
  private harnessLast = this.harnessFirst;

  add(group: CpuGroup, pid: number | undefined): void {
    if (pid === undefined || this.procs.has(pid)) return;
    const now = readProc(pid)?.cpuSeconds;
    if (now !== undefined) this.procs.set(pid, { group, first: now, last: now });
  }

  sample(): void {
    for (const [pid, p] of this.procs) {
      const now = readProc(pid)?.cpuSeconds;
      if (now !== undefined) p.last = now;
    }
    this.harnessLast = process.cpuUsage();
  }

  /** Seconds per group since each process joined. */
  totals(): Record<CpuGroup, number> {
    const out = Object.fromEntries(CPU_GROUPS.map((g) => [g, 0])) as Record<CpuGroup, number>;
    for (const p of this.procs.values()) out[p.group] += p.last - p.first;
    out.loadGenerator = (this.harnessLast.user + this.harnessLast.system - this.harnessFirst.user - this.harnessFirst.system) / 1e6;
    return out;
  }

  /** Seconds of one group since each of its processes joined. */
  group(group: CpuGroup): number {
    let sum = 0;
    for (const p of this.procs.values()) if (p.group === group) sum += p.last - p.first;
    return sum;
  }
}

interface Snapshot {
  at: number;
  cpu: Record<CpuGroup, number>;
  finished: number;
  machine: { busy: number; total: number } | undefined;
}

function spanOf(a: Snapshot, b: Snapshot, finished = b.finished - a.finished): CpuSpan {
  return {
    seconds: round((b.at - a.at) / 1000, 1) ?? 0,
    finished,
    cpuSeconds: Object.fromEntries(CPU_GROUPS.map((g) => [g, round(b.cpu[g] - a.cpu[g], 2) ?? 0])) as Record<CpuGroup, number>,
    machineCpuSeconds: a.machine && b.machine ? round(b.machine.busy - a.machine.busy, 1) : null,
  };
}

async function scrape(url: string): Promise<ReturnType<typeof parsePrometheusText> | null> {
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(2000) });
    return res.ok ? parsePrometheusText(await res.text()) : null;
  } catch {
    return null;
  }
}

// ------------------------------------------------------------------------------------------------
// Running
// ------------------------------------------------------------------------------------------------

export interface DistributedContext {
  opts: LoadOptions;
  prompts: string[];
  paletteUpload: { body: Buffer; contentType: string };
  workDir: string;
  log: (line: string) => void;
}

/** application_name of the harness's own PostgreSQL sessions. */
const HARNESS_APP = 'his-load-harness';

/** Where a run keeps its generations: read after the run for what was lost. */
interface Store {
  counts(): Promise<Record<string, number>>;
}

export async function runDistributedScenario(plan: DistributedPlan, ctx: DistributedContext): Promise<DistributedResult> {
  if (ctx.opts.target) throw new Error('the distributed scenario starts its own services; it cannot run against --target');
  const nginxBin = findNginx(ctx.log);
  const runs: DistributedRunResult[] = [];
  for (const name of plan.runs) {
    ctx.log(`  ${name}: ${plan.rate} gen/s, global Gemini limit ${plan.geminiLimit}, emulator ${plan.latency}`);
    runs.push(await runOne(name, plan, ctx, nginxBin));
  }
  return { description: DESCRIPTION, plan, runs, summary: summarize(plan, runs) };
}

async function runOne(name: DistributedRunName, plan: DistributedPlan, ctx: DistributedContext, nginxBin: string): Promise<DistributedRunResult> {
  const distributed = name === 'distributed';
  const runDir = mkdtempSync(join(ctx.workDir, `distributed-${name}-`));
  const dataDir = join(runDir, 'data');
  mkdirSync(dataDir);
  const cleanups: (() => Promise<unknown>)[] = [];
  const meter = new CpuMeter();
  let pg: Client | undefined;
  try {
    const emulator: EmulatorProcess = await startEmulator(
      {
        EMULATOR_LATENCY: plan.latency,
        EMULATOR_RATE_429: String(plan.rate429),
        EMULATOR_HANG_RATE: String(plan.hangRate),
        EMULATOR_SEED: '20261124',
      },
      join(runDir, 'emulator.log'),
    );
    cleanups.push(() => emulator.stop(5000));
    await warmEmulator(emulator.url, ctx.prompts);

    const spec = parseLatencySpec(plan.latency) as LatencySpec;
    const env: Record<string, string> = {
      HOST: '127.0.0.1',
      GEMINI_MAX_CONCURRENCY: String(plan.geminiLimit),
      // The harness is one client standing for many (see scenarios.ts).
      GEMINI_MAX_CONCURRENCY_PER_CLIENT: String(plan.geminiLimit),
      MAX_ACTIVE_GENERATIONS_PER_CLIENT: '100000',
      PIPELINE_MAX_QUEUE: '4000',
      // A hung call ends soon after the latency's cap, so the run can wait for every generation.
      GEMINI_TIMEOUT_MS: String(maxLatencyMs(spec) + 10_000),
      // Above nginx's idle timeout towards the instances, as the README says for any balancer.
      HTTP_KEEP_ALIVE_TIMEOUT_MS: String((UPSTREAM_KEEPALIVE_S + 5) * 1000),
    };
    let store: Store;
    let redis: PrivateRedis | undefined;
    let db: TestDatabase | undefined;
    let prefix: string | undefined;
    if (distributed) {
      db = await createTestDatabase();
      const dropDb = db;
      cleanups.push(() => dropDb.drop());
      redis = await startRedisServer();
      const stopRedis = redis;
      cleanups.push(() => stopRedis.stop('SIGTERM'));
      prefix = uniquePrefix('load');
      pg = new Client({ connectionString: TEST_POSTGRES_URL, connectionTimeoutMillis: 10_000, application_name: HARNESS_APP });
      pg.on('error', () => undefined);
      await pg.connect();
      const dbUrl = db.url;
      store = {
        counts: async () => {
          const client = new Client({ connectionString: dbUrl, connectionTimeoutMillis: 10_000, application_name: HARNESS_APP });
          client.on('error', () => undefined);
          await client.connect();
          try {
            const rows = await client.query<{ status: string; error_code: string | null; n: string }>('select status, error_code, count(*) as n from generations group by 1, 2');
            return statusCounts(rows.rows);
          } finally {
            await client.end();
          }
        },
      };
      Object.assign(env, {
        DATABASE_URL: db.url,
        REDIS_URL: redis.url,
        REDIS_PREFIX: prefix,
        ROLE: 'all',
        QUEUE_LOCK_MS: String(plan.queueLockMs),
        // Two instances, one palette thread each: the same two threads as the embedded run's pool.
        PALETTE_WORKERS: '1',
      });
    } else {
      const file = join(dataDir, 'hybrid-image-search.sqlite');
      store = {
        counts: async () => {
          const sqlite = new DatabaseSync(file, { readOnly: true });
          try {
            return statusCounts(sqlite.prepare('select status, error_code, count(*) as n from generations group by 1, 2').all() as { status: string; error_code: string | null; n: number }[]);
          } finally {
            sqlite.close();
          }
        },
      };
      env.PALETTE_WORKERS = '2';
    }
    Object.assign(env, plan.serviceEnv);

    // --cpu-profile: V8 profiles of the instances, written when they stop (not the killed one).
    const profileDir = ctx.opts.cpuProfile ? join(runDir, 'cpu-profiles') : undefined;
    if (profileDir) mkdirSync(profileDir);
    const instances: (ServiceProcess | undefined)[] = [];
    const allPids = new Set<number>();
    const start = async (i: number, ports?: { port: number; metricsPort: number }) => {
      const svc = await startService({
        geminiUrl: emulator.url,
        dataDir,
        env,
        logFile: join(runDir, `service-${i}${ports ? '-restarted' : ''}.log`),
        cpuProfileDir: profileDir,
        nodeArgs: ctx.opts.serviceNodeArgs,
        ...ports,
      });
      instances[i] = svc;
      allPids.add(svc.pid);
      meter.add('services', svc.pid);
      return svc;
    };
    // Started one after the other: the first runs the migrations, the second finds them done.
    const count = distributed ? 2 : 1;
    for (let i = 0; i < count; i++) await start(i);
    cleanups.push(() => Promise.all(instances.map((s) => s?.stop(30_000))));
    const nginx: NginxProcess = await startNginx({ bin: nginxBin, upstreams: instances.map((s) => `127.0.0.1:${s!.port}`) });
    cleanups.push(async () => {
      await nginx.stop(true);
      // Its logs join the services' in the run's folder; its own folder goes.
      for (const file of ['nginx.conf', 'access.log', 'error.log']) {
        if (existsSync(join(nginx.prefix, file))) copyFileSync(join(nginx.prefix, file), join(runDir, `nginx-${file}`));
      }
      rmSync(nginx.prefix, { recursive: true, force: true });
    });
    const topology = distributed
      ? `nginx → ${count} instances (ROLE=all, PALETTE_WORKERS=1 each) → PostgreSQL database ${db!.name} + private redis-server (prefix ${prefix}); emulator process`
      : 'nginx → 1 embedded instance (SQLite, in-process queue, PALETTE_WORKERS=2); emulator process';
    ctx.log(`  ${name}: ${topology}; nginx at ${nginx.url}, services ${instances.map((s) => `${s!.pid}@${s!.port}`).join(', ')}; logs in ${runDir}`);

    // Every process whose CPU is reported.
    const pgPids = async () => {
      if (!pg || !db) return;
      const rows = await pg
        .query<{ pid: number; datname: string | null; backend_type: string; application_name: string }>('select pid, datname, backend_type, application_name from pg_stat_activity')
        .catch(() => undefined);
      for (const r of rows?.rows ?? []) {
        // The harness's own sessions (its status counts) are not the service's cost.
        if (r.application_name === HARNESS_APP) continue;
        if (r.datname === db.name) meter.add('postgres', r.pid);
        else if (r.datname === null && r.backend_type !== 'client backend') meter.add('postgresServer', r.pid);
      }
    };
    meter.add('emulator', emulator.pid);
    meter.add('redis', redis?.pid);
    for (const pid of nginx.pids()) meter.add('nginx', pid);
    await pgPids();

    // A few seconds at rest: what the instances cost with nothing to do (timers, polling, metrics).
    meter.sample();
    const idle0 = meter.group('services');
    const idleStart = performance.now();
    await sleep(plan.idleS * 1000);
    meter.sample();
    const idleServicesCpuPct = plan.idleS <= 0 ? null : round(((meter.group('services') - idle0) / ((performance.now() - idleStart) / 1000)) * 100, 1);

    const finishedNow = async () => {
      let sum = 0;
      for (const s of instances) {
        const m = s ? await scrape(s.metricsUrl) : null;
        if (m) sum += sumOf(m, 'pipeline_generations_total') || 0;
      }
      return sum;
    };
    const snapshot = async (): Promise<Snapshot> => {
      await pgPids();
      meter.sample();
      return { at: Date.now(), cpu: meter.totals(), finished: await finishedNow(), machine: readMachineCpu() };
    };

    const windowRecorder = new RouteRecorder();
    const driver = new HttpDriver(nginx.url, windowRecorder);
    const traffic = new TrafficRunner(driver, ctx.prompts, ctx.paletteUpload);
    cleanups.push(() => traffic.stop());
    const seeded = await seed(driver, ctx.prompts);
    traffic.seed(seeded.ids, seeded.images);
    const eventStream = distributed ? await probeEventStream(nginx.url) : undefined;
    if (eventStream) ctx.log(`  ${name}: event stream through nginx: ${JSON.stringify(eventStream)}`);

    const timeline: DistributedRunResult['timeline'] = [];
    const t0 = performance.now();
    const elapsedS = () => (performance.now() - t0) / 1000;
    let lastCpu = { at: performance.now(), services: meter.group('services') };
    let ticking = false;
    const ticker = setInterval(() => {
      if (ticking) return;
      ticking = true;
      void (async () => {
        try {
          await pgPids();
          for (const pid of nginx.pids()) meter.add('nginx', pid);
          meter.sample();
          const now = performance.now();
          const services = meter.group('services');
          const cpuPct = round(((services - lastCpu.services) / ((now - lastCpu.at) / 1000)) * 100, 1);
          lastCpu = { at: now, services };
          const stats = await emulatorStats(emulator.url).catch(() => null);
          timeline.push({ t: round(elapsedS(), 1) ?? 0, servicesCpuPct: cpuPct, emulatorInFlight: stats?.inFlight ?? null, finished: await finishedNow(), up: instances.filter(Boolean).length });
        } finally {
          ticking = false;
        }
      })();
    }, 1000);
    cleanups.push(async () => clearInterval(ticker));

    const load1Start = loadAverage()?.[0] ?? null;
    const arrivalsMs = (plan.warmupS + plan.windowS + (distributed ? plan.afterKillS : 0)) * 1000;
    const first = await snapshot();
    const running = traffic.run({ durationMs: arrivalsMs, generations: plan.generations, background: plan.background }, windowRecorder);
    await sleep(plan.warmupS * 1000);
    const windowStart = await snapshot();
    const windowStartMs = Date.now();
    await sleep(plan.windowS * 1000);
    const windowEnd = await snapshot();
    const windowEndMs = Date.now();
    ctx.log(`  ${name}: window ${spanOf(windowStart, windowEnd).seconds} s, ${windowEnd.finished - windowStart.finished} generations finished`);

    let kill: DistributedRunResult['kill'];
    let afterKillRecorder: RouteRecorder | undefined;
    let killAtMs = 0;
    if (distributed) {
      const victim = instances[1]!;
      // Kill it while it holds work (bounded): a kill between two jobs would prove nothing.
      let active: number | null = null;
      const waitUntil = performance.now() + plan.victimWaitMs;
      for (;;) {
        const m = await scrape(victim.metricsUrl);
        active = m ? sumOf(m, 'pipeline_jobs_active') : null;
        if ((active !== null && active >= 1) || performance.now() > waitUntil) break;
        await sleep(100);
      }
      afterKillRecorder = new RouteRecorder();
      driver.recorder = afterKillRecorder;
      meter.sample();
      killAtMs = Date.now();
      const atS = round(elapsedS(), 1) ?? 0;
      process.kill(victim.pid, 'SIGKILL');
      await victim.exited;
      instances[1] = undefined;
      ctx.log(`  ${name}: SIGKILLed instance 1 (pid ${victim.pid}) at ${atS} s holding ${active ?? '?'} job(s)`);
      let restartedAtS: number | null = null;
      let restartTookS: number | null = null;
      if (plan.restartAfterS !== null) {
        await sleep(plan.restartAfterS * 1000);
        const spawned = performance.now();
        restartedAtS = round(elapsedS(), 1);
        const again = await start(1, { port: victim.port, metricsPort: victim.metricsPort });
        restartTookS = round((performance.now() - spawned) / 1000, 1);
        ctx.log(`  ${name}: instance 1 started again (pid ${again.pid}) in ${restartTookS} s`);
      }
      kill = {
        atS,
        victimPid: victim.pid,
        victimActiveJobs: active,
        restartedAtS,
        restartTookS,
        takeover: { jobs: 0, longestJobRestartMs: null, medianJobRestartMs: null, longestGeminiRestartMs: null, records: [] },
        takeoversCounted: null,
      };
    }

    const handle = await running;
    ctx.log(`  ${name}: arrivals over at ${round(elapsedS(), 0)} s; waiting for every generation to finish (≤ ${Math.round(plan.settleMs / 1000)} s)`);
    const settleUntil = performance.now() + plan.settleMs;
    const stillGoing = await traffic.settle(plan.settleMs);
    let counts = await store.counts();
    while (Object.keys(counts).some((k) => !FINAL.has(k.split(' ')[0])) && performance.now() < settleUntil) {
      await sleep(500);
      counts = await store.counts();
    }
    const end = await snapshot();
    const load1End = loadAverage()?.[0] ?? null;
    await traffic.stop();
    const stats = await emulatorStats(emulator.url).catch(() => null);
    if (stillGoing > 0) ctx.log(`  ${name}: ${stillGoing} client journeys still going at the end`);

    if (kill && redis && prefix && db) {
      kill.takeover = await takeoversFrom(redis.url, prefix, db.url, killAtMs);
      let counted = 0;
      for (const s of instances) {
        const m = s ? await scrape(s.metricsUrl) : null;
        if (m) counted += sumOf(m, 'pipeline_jobs_takeovers_total') || 0;
      }
      kill.takeoversCounted = counted;
    }
    clearInterval(ticker);
    // Let nginx write its buffered log before it is read.
    await nginx.stop(true);
    const accessLog = readFileSync(nginx.accessLog, 'utf8');
    const windowSpan = spanOf(windowStart, windowEnd);
    let profiles: DistributedRunResult['profiles'];
    if (profileDir) {
      await Promise.all(instances.map((i) => i?.stop(30_000)));
      profiles = summarizeProfiles(profileDir).map((p) => ({ file: p.file, busyShare: p.busyShare, top: p.components.slice(0, 8) }));
    }
    const lost = lostOf(counts);
    ctx.log(`  ${name}: database ${JSON.stringify(counts)} → lost ${lost}; emulator max in flight ${stats?.maxInFlight ?? '?'} (limit ${plan.geminiLimit})`);
    return {
      name,
      topology,
      env,
      emulator: { latency: plan.latency, rate429: plan.rate429, hangRate: plan.hangRate, stats },
      idleServicesCpuPct,
      window: { ...windowSpan, perGenerationMs: perGeneration(windowSpan) },
      whole: spanOf(first, end, finalCount(counts) - seeded.ids.length),
      generations: handle.outcomes(),
      database: counts,
      lost,
      routes: { window: windowRecorder.summary(), ...(afterKillRecorder ? { afterKill: afterKillRecorder.summary() } : {}) },
      balancer: {
        window: summarizeBalancerLog(accessLog, windowStartMs, windowEndMs),
        ...(kill ? { afterKill: summarizeBalancerLog(accessLog, killAtMs - 1000) } : {}),
      },
      kill,
      timeline,
      ...(eventStream ? { eventStream } : {}),
      ...(profiles ? { profiles } : {}),
      load1: { start: load1Start, end: load1End },
      maxArrivalLagMs: round(traffic.maxArrivalLagMs, 0) ?? 0,
      resources: { database: db?.name ?? null, redisPid: redis?.pid ?? null, nginxPrefix: nginx.prefix, servicePids: [...allPids], emulatorPid: emulator.pid, runDir },
    };
  } finally {
    await pg?.end().catch(() => undefined);
    // In reverse: nginx, services, then Redis, the database and the emulator.
    for (const cleanup of cleanups.reverse()) await cleanup().catch((e: unknown) => ctx.log(`  cleanup: ${String(e)}`));
    rmSync(dataDir, { recursive: true, force: true });
  }
}

/**
 * Opens `/events` through the balancer for a generation whose Gemini call hangs, reads the first event
 * (it must come while the generation is still running: proxy buffering would hold it back), then
 * cancels the generation through the balancer (whichever instance holds the job) and reads the stream
 * to its end. Bounded by 30 s.
 */
export async function probeEventStream(baseUrl: string): Promise<EventStreamProbe> {
  const probe: EventStreamProbe = { firstEventMs: null, firstStatus: null, finalStatus: null, openMs: null };
  const signal = AbortSignal.timeout(30_000);
  try {
    const created = await fetch(`${baseUrl}/api/v1/generations`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ prompt: 'an event stream through the balancer [emulator:hang]' }),
      signal,
    });
    const { id } = (await created.json()) as { id?: string };
    if (!id) throw new Error(`create answered ${created.status}`);
    const opened = performance.now();
    const res = await fetch(`${baseUrl}/api/v1/generations/${id}/events`, { signal });
    if (!res.ok || !res.body) throw new Error(`events answered ${res.status}`);
    const reader = res.body.getReader();
    const decoder = new TextDecoder();
    let buffer = '';
    let canceled = false;
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let cut: number;
      while ((cut = buffer.indexOf('\n\n')) >= 0) {
        const block = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        const data = block.split('\n').find((l) => l.startsWith('data: '));
        if (!data) continue;
        const status = (JSON.parse(data.slice(6)) as { status?: string }).status ?? null;
        if (probe.firstEventMs === null) {
          probe.firstEventMs = round(performance.now() - opened, 0);
          probe.firstStatus = status;
        }
        probe.finalStatus = status;
      }
      if (probe.firstEventMs !== null && !canceled) {
        canceled = true;
        const answer = await fetch(`${baseUrl}/api/v1/generations/${id}/cancel`, { method: 'POST', signal });
        await answer.arrayBuffer();
      }
    }
    probe.openMs = round(performance.now() - opened, 0);
  } catch (error) {
    probe.error = error instanceof Error ? error.message : String(error);
  }
  return probe;
}

/** The jobs BullMQ saw taken over, with the image records PostgreSQL holds for them. */
async function takeoversFrom(redisUrl: string, prefix: string, dbUrl: string, killAtMs: number): Promise<TakeoverSummary> {
  // The service's queue: its name and key prefix (src/pipeline/bullmq-job-queue.ts, src/redis/redis.connections.ts).
  const queue = new Queue('images', { connection: { url: redisUrl, maxRetriesPerRequest: 1 }, prefix: `${prefix}:bull` });
  try {
    const jobs = await queue.getJobs(['completed', 'failed', 'active', 'waiting', 'delayed'], 0, -1);
    const facts: JobFacts[] = jobs.filter(Boolean).map((j) => ({ id: String(j.id), stalledCounter: j.stalledCounter ?? 0, processedOn: j.processedOn }));
    const taken = facts.filter((f) => f.stalledCounter > 0);
    const images = new Map<string, ImageFacts>();
    if (taken.length > 0) {
      const client = new Client({ connectionString: dbUrl, connectionTimeoutMillis: 10_000, application_name: HARNESS_APP });
      client.on('error', () => undefined);
      await client.connect();
      try {
        const ids = [...new Set(taken.map((f) => f.id.replace(/-\d+$/, '')))];
        const rows = await client.query<{ generation_id: string; idx: number; created_at: string; gemini_ms: number; upload_ms: number; palette_ms: number; status: string; error_code: string | null }>(
          'select generation_id, idx, created_at, gemini_ms, upload_ms, palette_ms, status, error_code from generation_images where generation_id = any($1)',
          [ids],
        );
        for (const r of rows.rows) {
          images.set(`${r.generation_id}-${r.idx}`, {
            createdAt: Number(r.created_at),
            geminiMs: Number(r.gemini_ms),
            uploadMs: Number(r.upload_ms),
            paletteMs: Number(r.palette_ms),
            status: r.status,
            errorCode: r.error_code,
          });
        }
      } finally {
        await client.end();
      }
    }
    return takeoversOf(facts, images, killAtMs);
  } finally {
    await queue.close();
  }
}
