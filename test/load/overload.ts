/**
 * The `overload` scenario (`npm run load -- --scenarios=overload`): what the service does when it is
 * offered more generations than the box can finish. One service, one run, two phases:
 *
 * 1. **Ramp**: short steps of Poisson generation arrivals at rising rates, each with a fixed Gemini
 *    latency (the emulator's `[emulator:latency=MS]` directive, 2 s by default), and a separate
 *    light-traffic driver (status polls + history reads at a modest fixed rate, its own HTTP agent
 *    and recorder). A step **keeps up** (see `judgeRampStep`) when the service finished ≥ 95 % of
 *    the generations that arrived in it, refused none and answered the light routes with p99 ≤ 50 ms.
 *    The **sustainable rate** is the highest rate whose step and every lower step kept up
 *    (`chooseSustainableRate`). The ramp runs with load shedding on, as deployed: a step in which
 *    the shedder refused anything does not keep up, so a shedder that fires too early lowers the
 *    sustainable rate instead of hiding behind it (its refusals are named in the step's failure).
 * 2. **Overload step**: `multiplier` (2) × the sustainable rate (or `--overload-rate`) for a fixed
 *    window, then every accepted generation is followed to its end. Reported: accepted, refused by
 *    status and code, refusal latency, light-route latency (from the separate driver), the
 *    service's event-loop delay (its own `/metrics`), the outcome of every accepted generation,
 *    the shedder's start/stop events (its `overload_shedding` gauge and log lines) and CPU per
 *    generation; `evaluateOverloadTargets` checks the targets of issue #15.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { summarizeProfiles, type ProfileSummary } from './cpu-profile';
import { HttpDriver, RouteRecorder, type RouteKey } from './http-driver';
import type { LoadOptions } from './options';
import { startService } from './processes';
import { Sampler, ELD_RESOLUTION_MS, type Tick } from './sampler';
import { cpuPerGenerationOf, seed, summarizeStep, UNBOUNDED_SETTINGS, type CpuPerGeneration, type ResourceSummary, type RunContext, type StepPlan } from './scenarios';
import { round, Samples, type LatencySummary } from './stats';
import { TrafficRunner, type GenerationOutcomes, type Workload } from './traffic';

/** The targets of issue #15 at 2× the sustainable rate. */
export const OVERLOAD_TARGETS = { lightP99Ms: 50, refusalP99Ms: 10, eventLoopP99Ms: 50 } as const;
/** A ramp step keeps up when the service finished at least this share of the generations that arrived. */
export const KEEP_UP_SHARE = 0.95;

export const OVERLOAD_DESCRIPTION =
  'overload: a stepped ramp (fixed Gemini latency, shedding on) finds the sustainable rate on this box, then 2× that rate for a fixed window: ' +
  'refusals, refusal latency, light-route p99 from a separate driver, event-loop delay, every accepted generation followed to its end';

export interface OverloadPlan {
  /** Ascending generation rates (/s) of the ramp; empty: no ramp (then `overloadRate` is required). */
  rampRates: number[];
  rampStepMs: number;
  /** Rate of the overload step; undefined: `multiplier` × the sustainable rate. */
  overloadRate: number | undefined;
  multiplier: number;
  overloadStepMs: number;
  geminiLatencyMs: number;
  /** Light traffic of the separate driver (requests/s), during the ramp and the overload step alike. */
  light: { status: number; history: number };
  /** Longest wait, after the overload step, for its accepted generations to finish. */
  settleMs: number;
  env: Record<string, string>;
}

export function planOverload(opts: LoadOptions): OverloadPlan {
  const full = opts.profile === 'full';
  const o = opts.overload;
  return {
    rampRates: o.ramp ?? (full ? [5, 10, 15, 20, 25, 30, 35, 40, 45, 50, 60] : [5, 10, 15, 20, 25, 30, 35, 40, 50, 60]),
    rampStepMs: Math.round((full ? 15_000 : 10_000) * opts.scale),
    overloadRate: o.rate,
    multiplier: 2,
    overloadStepMs: Math.round((o.seconds ?? (full ? 30 : 15) * opts.scale) * 1000),
    geminiLatencyMs: o.latencyMs,
    // 40 requests/s: a 10 s ramp step's p99 rests on its 4 slowest of ≈ 400 answers.
    light: { status: 30, history: 10 },
    settleMs: o.latencyMs + 90_000,
    // Gemini's semaphore, the pipeline queue and the per-client shares out of the way (the harness is
    // one client standing for many): the count-based refusals must not hide the shedder. What still
    // refuses is reported by status and code.
    env: UNBOUNDED_SETTINGS,
  };
}

// ------------------------------------------------------------------------------------------------
// Pure parts: judging a ramp step, choosing the sustainable rate, the targets
// ------------------------------------------------------------------------------------------------

/** What judging a ramp step needs. */
export interface RampFigures {
  arrivedPerSecond: number;
  /** Finished generations per second over the step's window shifted by the pipeline's own latency. */
  finishedPerSecond: number | null;
  /** Creates answered 429 or 503, by "status CODE". */
  refused: Record<string, number>;
  /** Other failed creates (5xx but 503, transport errors), by "status CODE". */
  createErrors: Record<string, number>;
  lightP99Ms: number | null;
}

/** Why a ramp step does not keep up, or null when it does. */
export function judgeRampStep(f: RampFigures): string | null {
  const reasons: string[] = [];
  const refused = Object.entries(f.refused);
  if (refused.length > 0) reasons.push(`refused ${refused.map(([k, n]) => `${k} × ${n}`).join(', ')}`);
  const errors = Object.entries(f.createErrors);
  if (errors.length > 0) reasons.push(`create errors ${errors.map(([k, n]) => `${k} × ${n}`).join(', ')}`);
  if (f.finishedPerSecond === null) reasons.push('finished rate unknown');
  else if (f.arrivedPerSecond > 0 && f.finishedPerSecond < KEEP_UP_SHARE * f.arrivedPerSecond) {
    reasons.push(`finished ${f.finishedPerSecond}/s of ${f.arrivedPerSecond}/s arrived`);
  }
  if (f.lightP99Ms === null) reasons.push('no light-route samples');
  else if (f.lightP99Ms > OVERLOAD_TARGETS.lightP99Ms) reasons.push(`light p99 ${f.lightP99Ms} ms`);
  return reasons.length > 0 ? reasons.join('; ') : null;
}

export interface SustainableRate {
  /** The highest ramp rate that kept up with every lower one; null when the lowest did not. */
  rate: number | null;
  /** True when every step kept up: the box sustains at least `rate` (the ramp stopped short of its limit). */
  atLeast: boolean;
  /** The first step that did not keep up and why. */
  limit: { rate: number; failure: string } | null;
}

/** The sustainable rate from judged ramp steps (in any order; a step that did not run is absent). */
export function chooseSustainableRate(steps: readonly { rate: number; failure: string | null }[]): SustainableRate {
  const sorted = [...steps].sort((a, b) => a.rate - b.rate);
  let rate: number | null = null;
  for (const step of sorted) {
    if (step.failure !== null) return { rate, atLeast: false, limit: { rate: step.rate, failure: step.failure } };
    rate = step.rate;
  }
  return { rate, atLeast: rate !== null, limit: null };
}

/** Finished generations over [from, to] from the service's cumulative counter, interpolated between ticks; null without ticks around both ends. */
export function finishedBetween(ticks: readonly Pick<Tick, 't' | 'finished'>[], from: number, to: number): number | null {
  const at = (t: number): number | null => {
    const points = ticks.filter((k) => k.finished !== null);
    let before: (typeof points)[number] | undefined;
    let after: (typeof points)[number] | undefined;
    for (const p of points) {
      if (p.t <= t) before = p;
      if (p.t >= t && after === undefined) after = p;
    }
    if (!before || !after) return null;
    if (after.t === before.t) return before.finished;
    return before.finished! + ((after.finished! - before.finished!) * (t - before.t)) / (after.t - before.t);
  };
  const a = at(from);
  const b = at(to);
  return a === null || b === null ? null : b - a;
}

/** Outcome of the accepted generations of the overload step. */
export interface AcceptedOutcomes {
  accepted: number;
  succeeded: number;
  /** Final but not succeeded, by "status CODE" (e.g. "failed PALETTE_TIMEOUT"). */
  failed: Record<string, number>;
  /** Of those, failures the emulator injected on purpose (its 429s after retries, its hangs). */
  injectedFailures: number;
  /** Accepted, not final when the harness stopped following them. */
  unfinished: number;
}

const INJECTED = /^failed (GEMINI_RATE_LIMITED|GEMINI_TIMEOUT)$/;

export function acceptedOutcomes(o: GenerationOutcomes, injectedFaults: boolean): AcceptedOutcomes {
  const failed: Record<string, number> = {};
  let injectedFailures = 0;
  for (const [key, n] of Object.entries(o.finished)) {
    if (key === 'succeeded') continue;
    failed[key] = n;
    // A GEMINI_TIMEOUT is only the emulator's doing when it was told to hang some calls.
    if (injectedFaults && INJECTED.test(key)) injectedFailures += n;
  }
  return { accepted: o.accepted, succeeded: o.finished.succeeded ?? 0, failed, injectedFailures, unfinished: o.unfinishedAtEnd };
}

export interface OverloadTargets {
  lightP99Ms: { value: number | null; limit: number; met: boolean };
  refusalP99Ms: { value: number | null; limit: number; met: boolean; refusals: number };
  /** Every accepted generation final, none failed but by the emulator's injected faults. */
  allAcceptedFinished: { met: boolean; selfInflictedFailures: number; unfinished: number };
  eventLoopP99Ms: { value: number | null; limit: number; met: boolean };
  met: boolean;
  missed: string[];
}

/** The targets of issue #15, checked on the overload step's figures. With no refusal at all the refusal target holds vacuously. */
export function evaluateOverloadTargets(step: {
  lightLatencyMs: Pick<LatencySummary, 'p99'>;
  refusalLatencyMs: Pick<LatencySummary, 'p99' | 'count'>;
  outcomes: AcceptedOutcomes;
  eventLoopDelayP99Ms: number | null;
}): OverloadTargets {
  const light = step.lightLatencyMs.p99;
  const refusal = step.refusalLatencyMs.p99;
  const failedTotal = Object.values(step.outcomes.failed).reduce((a, b) => a + b, 0);
  const selfInflicted = failedTotal - step.outcomes.injectedFailures;
  const eld = step.eventLoopDelayP99Ms;
  const targets = {
    lightP99Ms: { value: light, limit: OVERLOAD_TARGETS.lightP99Ms, met: light !== null && light <= OVERLOAD_TARGETS.lightP99Ms },
    refusalP99Ms: {
      value: refusal,
      limit: OVERLOAD_TARGETS.refusalP99Ms,
      met: step.refusalLatencyMs.count === 0 || (refusal !== null && refusal <= OVERLOAD_TARGETS.refusalP99Ms),
      refusals: step.refusalLatencyMs.count,
    },
    allAcceptedFinished: { met: selfInflicted === 0 && step.outcomes.unfinished === 0, selfInflictedFailures: selfInflicted, unfinished: step.outcomes.unfinished },
    eventLoopP99Ms: { value: eld, limit: OVERLOAD_TARGETS.eventLoopP99Ms, met: eld !== null && eld <= OVERLOAD_TARGETS.eventLoopP99Ms },
  };
  const missed = (Object.keys(targets) as (keyof typeof targets)[]).filter((k) => !targets[k].met);
  return { ...targets, met: missed.length === 0, missed };
}

/** Shedding start/stop lines of the service's log (its JSON lines), on the run's time axis. */
export function sheddingEvents(logText: string, wallT0: number): SheddingEvent[] {
  const events: SheddingEvent[] = [];
  for (const line of logText.split('\n')) {
    if (!line.includes('"LoadShedder"')) continue;
    let entry: { time?: string; msg?: string };
    try {
      entry = JSON.parse(line) as { time?: string; msg?: string };
    } catch {
      continue;
    }
    const msg = entry.msg ?? '';
    const kind = msg.startsWith('Shedding load') ? 'start' : msg.startsWith('Load shedding stopped') ? 'stop' : undefined;
    if (!kind || !entry.time) continue;
    events.push({ t: round((Date.parse(entry.time) - wallT0) / 1000, 1) ?? 0, kind, message: msg });
  }
  return events;
}

export interface SheddingEvent {
  /** Seconds on the run's time axis. */
  t: number;
  kind: 'start' | 'stop';
  message: string;
}

// ------------------------------------------------------------------------------------------------
// Results
// ------------------------------------------------------------------------------------------------

export interface RampStepResult {
  rate: number;
  fromT: number;
  toT: number;
  arrived: number;
  arrivedPerSecond: number;
  finishedPerSecond: number | null;
  refused: Record<string, number>;
  createErrors: Record<string, number>;
  lightLatencyMs: LatencySummary;
  eventLoopDelayP99Ms: number | null;
  cpuPctMean: number | null;
  cpuPerGenerationMs: number | null;
  /** Seconds of the step with the shedder on (its gauge, once a second). */
  sheddingSeconds: number;
  failure: string | null;
}

export interface OverloadStepResult {
  offeredRate: number;
  /** offeredRate ÷ the sustainable rate. */
  multiplier: number | null;
  fromT: number;
  toT: number;
  offered: number;
  accepted: number;
  refused: { total: number; byCode: Record<string, number> };
  createErrors: Record<string, number>;
  refusalLatencyMs: LatencySummary;
  /** Latency of creates that were accepted (Prefer: wait: the whole generation). */
  acceptedCreateLatencyMs: LatencySummary;
  lightLatencyMs: LatencySummary;
  lightByRoute: ReturnType<RouteRecorder['summary']>;
  /** Worst one-second p99 of the service's event-loop delay over the step (its `/metrics`, the monitor's 10 ms resolution taken off). */
  eventLoopDelayP99Ms: number | null;
  /** [seconds on the run's axis, that second's event-loop delay p99 (ms, resolution off), shedding gauge]. */
  bySecond: [number, number | null, number | null][];
  outcomes: AcceptedOutcomes;
  endToEndMs: LatencySummary;
  finishedPerSecond: number | null;
  shedding: { events: SheddingEvent[]; sheddingSeconds: number };
  cpuPerGenerationMs: number | null;
  service: ResourceSummary;
  harness: { eventLoopDelayP99Ms: number | null; maxArrivalLagMs: number };
}

export interface OverloadResult {
  plan: Omit<OverloadPlan, 'env'>;
  env: Record<string, string>;
  ramp: RampStepResult[];
  sustainable: SustainableRate;
  /** CPU per generation at the sustainable rate (its ramp step) against the run's floor; absent without either. */
  cpuPerGeneration: CpuPerGeneration | undefined;
  step: OverloadStepResult | null;
  targets: OverloadTargets | null;
  /** Every shedding start/stop of the run (ramp included). */
  sheddingEvents: SheddingEvent[];
  profiles: ProfileSummary[];
  ticks: Tick[];
  serviceLog: string | undefined;
}

/** The JSON summary's `overload` entry. */
export function overloadSummary(r: OverloadResult): unknown {
  const { lightByRoute: _routes, bySecond: _bySecond, service, ...step } = r.step ?? ({} as OverloadStepResult);
  return {
    sustainableRate: r.sustainable.rate,
    sustainable: r.sustainable,
    cpuPerGeneration: r.cpuPerGeneration,
    ramp: r.ramp.map(({ fromT: _f, toT: _t, ...s }) => s),
    step: r.step ? { ...step, service: service && { cpuPctMean: service.cpuPctMean, eventLoopUtilizationMean: service.eventLoopUtilizationMean, paletteQueueMax: service.paletteQueueMax, paletteWaitingMax: service.paletteWaitingMax, geminiInFlightMax: service.geminiInFlightMax, othersCpuPctMean: service.othersCpuPctMean, gcPct: service.gcPct } } : null,
    targets: r.targets,
    sheddingEvents: r.sheddingEvents.map((e) => `${e.t} s ${e.kind}: ${e.message}`),
    cpuProfile: r.profiles.map((p) => ({ file: p.file, busyShare: p.busyShare, top: p.components.slice(0, 8) })),
    serviceLog: r.serviceLog,
  };
}

// ------------------------------------------------------------------------------------------------
// Running it
// ------------------------------------------------------------------------------------------------

/** Records refusal latencies apart (creates answered 429/503) beside the usual per-route figures. */
class CreateRecorder extends RouteRecorder {
  readonly refusals = new Samples();
  readonly acceptedCreates = new Samples();
  override record(route: RouteKey, ms: number, outcome: string, at?: number): void {
    super.record(route, ms, outcome, at);
    if (route !== 'create' && route !== 'createWait') return;
    if (/^(429|503) /.test(outcome)) this.refusals.add(ms);
    else if (/^20[12]$/.test(outcome)) this.acceptedCreates.add(ms);
  }

  createOutcomes(): { refused: Record<string, number>; createErrors: Record<string, number> } {
    const refused: Record<string, number> = {};
    const createErrors: Record<string, number> = {};
    for (const route of ['create', 'createWait'] as const) {
      for (const [outcome, n] of this.outcomes.get(route) ?? []) {
        if (/^(429|503) /.test(outcome)) refused[outcome] = (refused[outcome] ?? 0) + n;
        else if (!/^2\d\d$/.test(outcome)) createErrors[outcome] = (createErrors[outcome] ?? 0) + n;
      }
    }
    return { refused, createErrors };
  }
}

const withLatency = (prompts: string[], ms: number) => prompts.map((p) => `${p} [emulator:latency=${ms}]`);

export async function runOverloadScenario(plan: OverloadPlan, ctx: RunContext): Promise<OverloadResult> {
  const { opts, log } = ctx;
  if (plan.rampRates.length === 0 && plan.overloadRate === undefined) throw new Error('overload: no ramp and no --overload-rate: nothing to offer');
  const env = { ...plan.env, ...opts.serviceEnv };
  const runDir = mkdtempSync(join(ctx.workDir, 'overload-'));
  const profileDir = join(runDir, 'cpu-profiles');
  let target: { baseUrl: string; metricsUrl: string; pid?: number; stop?: () => Promise<void> };
  let logFile: string | undefined;
  if (opts.target) {
    target = opts.target;
    log(`  overload: against ${opts.target.baseUrl} (its own settings; ${JSON.stringify(env)} not applied)`);
  } else {
    const service = await startService({
      geminiUrl: ctx.emulator!.url,
      dataDir: join(runDir, 'data'),
      env,
      logFile: join(runDir, 'service.log'),
      cpuProfileDir: opts.cpuProfile ? profileDir : undefined,
      nodeArgs: opts.serviceNodeArgs,
    });
    logFile = service.logFile;
    target = { baseUrl: service.baseUrl, metricsUrl: service.metricsUrl, pid: service.pid, stop: () => service.stop(30_000) };
    log(`  overload: service pid ${service.pid} ${JSON.stringify(env)} (logs: ${service.logFile})`);
  }
  const prompts = withLatency(ctx.prompts, plan.geminiLatencyMs);
  const driver = new HttpDriver(target.baseUrl, new RouteRecorder());
  const traffic = new TrafficRunner(driver, prompts, ctx.paletteUpload);
  // The light routes have their own driver (own sockets, own recorder): their latency is not
  // queued behind the generation traffic's connections.
  const lightDriver = new HttpDriver(target.baseUrl, new RouteRecorder());
  const lightTraffic = new TrafficRunner(lightDriver, prompts, ctx.paletteUpload);
  const sampler = new Sampler({ metricsUrl: target.metricsUrl, pid: target.pid, emulatorPid: ctx.emulator?.pid }, () => driver.inFlight + lightDriver.inFlight);
  const t0 = performance.now();
  const wallT0 = Date.now();
  const now = () => (performance.now() - t0) / 1000;
  const lagS = plan.geminiLatencyMs / 1000 + 0.2;
  sampler.start();

  interface Ran {
    rate: number;
    recorder: CreateRecorder;
    light: RouteRecorder;
    fromT: number;
    toT: number;
    outcomes: () => GenerationOutcomes;
  }
  const runStep = async (rate: number, durationMs: number): Promise<Ran> => {
    const recorder = new CreateRecorder();
    const light = new RouteRecorder();
    const fromT = now();
    const workload: Workload = { durationMs, generations: { ratePerSecond: rate, waitShare: 1, pollMs: 2000, downloadShare: 0 } };
    const [handle] = await Promise.all([traffic.run(workload, recorder), lightTraffic.run({ durationMs, background: plan.light }, light)]);
    return { rate, recorder, light, fromT, toT: now(), outcomes: handle.outcomes };
  };
  const tickWindow = (from: number, to: number) => sampler.ticks.filter((k) => k.t >= from && k.t <= to + 0.5);
  const eldWorst = (from: number, to: number) => {
    const v = tickWindow(from, to).map((k) => k.eventLoopDelayP99Ms).filter((x): x is number => x !== null);
    return v.length ? round(Math.max(0, Math.max(...v) - ELD_RESOLUTION_MS), 1) : null;
  };
  const sheddingSeconds = (from: number, to: number) => tickWindow(from, to).filter((k) => (k.shedding ?? 0) > 0).length;
  const stepPlan = (label: string, rate: number, durationMs: number): StepPlan => ({ label, offeredGenerationsPerSecond: rate, warmupS: Math.min(3, durationMs / 2000), workload: { durationMs } });
  const judge = (r: Ran): RampStepResult => {
    const o = r.outcomes();
    const durationS = r.toT - r.fromT;
    const finished = finishedBetween(sampler.ticks, r.fromT + lagS, r.toT + lagS);
    const { refused, createErrors } = r.recorder.createOutcomes();
    const summary = summarizeStep(stepPlan(`${r.rate}/s`, r.rate, durationS * 1000), r.recorder, sampler.ticks, r.fromT, r.toT, o, { start: null, end: null });
    const figures: RampFigures = {
      arrivedPerSecond: round(o.offered / durationS, 2) ?? 0,
      finishedPerSecond: finished === null ? null : round(finished / durationS, 2),
      refused,
      createErrors,
      lightP99Ms: r.light.light.summary().p99,
    };
    return {
      rate: r.rate,
      fromT: round(r.fromT, 1) ?? 0,
      toT: round(r.toT, 1) ?? 0,
      arrived: o.offered,
      arrivedPerSecond: figures.arrivedPerSecond,
      finishedPerSecond: figures.finishedPerSecond,
      refused,
      createErrors,
      lightLatencyMs: r.light.light.summary(),
      eventLoopDelayP99Ms: eldWorst(r.fromT, r.toT),
      cpuPctMean: summary.service.cpuPctMean,
      cpuPerGenerationMs: summary.service.perGenerationMs.service,
      sheddingSeconds: sheddingSeconds(r.fromT, r.toT),
      failure: judgeRampStep(figures),
    };
  };

  const ramp: RampStepResult[] = [];
  let step: OverloadStepResult | null = null;
  let sustainable: SustainableRate = { rate: null, atLeast: false, limit: null };
  try {
    const seeded = await seed(driver, ctx.prompts);
    traffic.seed(seeded.ids, seeded.images);
    lightTraffic.seed(seeded.ids, seeded.images);
    // Warm the request path up (unrecorded), as every scenario does.
    await Promise.all([
      traffic.run({ durationMs: 3000, generations: { ratePerSecond: 2, waitShare: 1, pollMs: 2000, downloadShare: 0 } }, new CreateRecorder()),
      lightTraffic.run({ durationMs: 3000, background: plan.light }, new RouteRecorder()),
    ]);
    await traffic.settle(plan.geminiLatencyMs + 5000);

    // The ramp. A step's finished rate needs the counter `lagS` after it ended, i.e. during the
    // next step: step k is judged once step k+1 has run (the last one after a pause).
    let previous: Ran | undefined;
    for (const rate of plan.rampRates) {
      log(`    ramp ${rate}/s for ${plan.rampStepMs / 1000} s`);
      const ran = await runStep(rate, plan.rampStepMs);
      if (previous) {
        const judged = judge(previous);
        ramp.push(judged);
        log(`      ${previous.rate}/s: ${judged.failure ?? 'keeps up'} (finished ${judged.finishedPerSecond}/s of ${judged.arrivedPerSecond}/s, light p99 ${judged.lightLatencyMs.p99} ms)`);
        if (judged.failure) {
          previous = undefined;
          break;
        }
      }
      previous = ran;
      // Refusals or slow light routes are known at once: no need for the next step.
      const { refused } = ran.recorder.createOutcomes();
      const lightP99 = ran.light.light.summary().p99;
      if (Object.keys(refused).length > 0 || lightP99 === null || lightP99 > OVERLOAD_TARGETS.lightP99Ms) break;
    }
    if (previous) {
      const last = previous;
      while ((sampler.ticks.at(-1)?.t ?? 0) < last.toT + lagS + 1) await sleep(250);
      const judged = judge(previous);
      ramp.push(judged);
      log(`      ${previous.rate}/s: ${judged.failure ?? 'keeps up'} (finished ${judged.finishedPerSecond}/s of ${judged.arrivedPerSecond}/s, light p99 ${judged.lightLatencyMs.p99} ms)`);
    }
    sustainable = chooseSustainableRate(ramp);
    log(`    sustainable rate: ${sustainable.rate ?? 'none'}${sustainable.atLeast ? ' (or more: every ramp step kept up)' : ''}${sustainable.limit ? `; ${sustainable.limit.rate}/s: ${sustainable.limit.failure}` : ''}`);

    const rate = plan.overloadRate ?? (sustainable.rate === null ? null : sustainable.rate * plan.multiplier);
    if (rate === null) {
      log('    no sustainable rate: the overload step is skipped (give --overload-rate to run it anyway)');
    } else {
      // Start the step from a calm service: the ramp's generations finished, shedding off.
      await traffic.settle(plan.geminiLatencyMs + 30_000);
      for (let waited = 0; waited < 15_000 && (sampler.ticks.at(-1)?.shedding ?? 0) > 0; waited += 500) await sleep(500);
      await sleep(2000);
      log(`    overload step: ${rate}/s for ${plan.overloadStepMs / 1000} s`);
      const ran = await runStep(rate, plan.overloadStepMs);
      const left = await traffic.settle(plan.settleMs);
      log(`    overload step's generations followed to their end (${left} journeys still going after ${plan.settleMs / 1000} s)`);
      // The finished counter is read `lagS` after the step's end: let the sampler get past it.
      while ((sampler.ticks.at(-1)?.t ?? 0) < ran.toT + lagS + 1) await sleep(250);
      step = overloadStep(ran, plan, sustainable.rate, sampler.ticks, lagS, opts, traffic.maxArrivalLagMs);
    }
  } finally {
    await traffic.stop();
    await lightTraffic.stop();
    await sampler.stop();
    await target.stop?.();
  }
  const events = logFile ? sheddingEvents(readFileSync(logFile, 'utf8'), wallT0) : [];
  if (step) step.shedding.events = events.filter((e) => e.t >= step!.fromT - 1);
  const atSustainable = ramp.find((s) => s.rate === sustainable.rate);
  if (!opts.target) rmSync(join(runDir, 'data'), { recursive: true, force: true });
  const { env: _planEnv, ...planFigures } = plan;
  return {
    plan: planFigures,
    env,
    ramp,
    sustainable,
    cpuPerGeneration: cpuPerGenerationOf(atSustainable?.cpuPerGenerationMs ?? null, ctx.floor),
    step,
    targets: step ? evaluateOverloadTargets(step) : null,
    sheddingEvents: events,
    profiles: opts.cpuProfile && !opts.target ? summarizeProfiles(profileDir) : [],
    ticks: sampler.ticks,
    serviceLog: logFile,
  };

  function overloadStep(ran: Ran, p: OverloadPlan, sustainableRate: number | null, ticks: Tick[], lag: number, o: LoadOptions, maxLag: number): OverloadStepResult {
    const outcomes = ran.outcomes();
    const durationS = ran.toT - ran.fromT;
    const { refused, createErrors } = ran.recorder.createOutcomes();
    const summary = summarizeStep(stepPlan(`${ran.rate}/s`, ran.rate, durationS * 1000), ran.recorder, ticks, ran.fromT, ran.toT, outcomes, { start: null, end: null });
    const finished = finishedBetween(ticks, ran.fromT + lag, ran.toT + lag);
    const window = tickWindow(ran.fromT, ran.toT);
    const cpu = window.map((k) => k.cpuPct).filter((x): x is number => x !== null);
    const cpuMean = cpu.length ? cpu.reduce((a, b) => a + b, 0) / cpu.length : null;
    const finishedPerSecond = finished === null ? null : finished / durationS;
    return {
      offeredRate: ran.rate,
      multiplier: sustainableRate ? round(ran.rate / sustainableRate, 2) : null,
      fromT: round(ran.fromT, 1) ?? 0,
      toT: round(ran.toT, 1) ?? 0,
      offered: outcomes.offered,
      accepted: outcomes.accepted,
      refused: { total: Object.values(refused).reduce((a, b) => a + b, 0), byCode: refused },
      createErrors,
      refusalLatencyMs: ran.recorder.refusals.summary(),
      acceptedCreateLatencyMs: ran.recorder.acceptedCreates.summary(),
      lightLatencyMs: ran.light.light.summary(),
      lightByRoute: ran.light.summary(),
      eventLoopDelayP99Ms: eldWorst(ran.fromT, ran.toT),
      bySecond: window.map((k) => [k.t, k.eventLoopDelayP99Ms === null ? null : round(Math.max(0, k.eventLoopDelayP99Ms - ELD_RESOLUTION_MS), 1), k.shedding ?? null]),
      outcomes: acceptedOutcomes(outcomes, o.hangRate > 0 || o.rate429 > 0),
      endToEndMs: outcomes.endToEndMs,
      finishedPerSecond: finishedPerSecond === null ? null : round(finishedPerSecond, 2),
      shedding: { events: [], sheddingSeconds: sheddingSeconds(ran.fromT, ran.toT) },
      // Service CPU over the step ÷ the generations it finished in the same (shifted) window.
      cpuPerGenerationMs: cpuMean !== null && finishedPerSecond ? round((cpuMean * 10) / finishedPerSecond, 1) : null,
      service: summary.service,
      harness: { eventLoopDelayP99Ms: summary.service.harnessEventLoopDelayP99Ms, maxArrivalLagMs: round(maxLag, 0) ?? 0 },
    };
  }
}
