/**
 * The human side of a load run: the capacity answer derived from the results, the charts (SVG), and
 * docs/capacity/results.md, a file that is generated whole (every table of the run) and never
 * edited by hand. The hand-written summary (docs/capacity.md) and method (docs/capacity/method.md)
 * quote it; a report never touches them.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ProfileSummary } from './cpu-profile';
import type { DistributedResult } from './distributed';
import type { FloorResult } from './floor';
import type { MemoryDetail } from './memory-detail';
import { FLAT_MB_PER_MIN, type RunResult, type ScenarioResult, type StepResult } from './scenarios';
import { round } from './stats';
import { lineChart, type Series } from './svg-chart';

export interface LoadResults {
  startedAt: string;
  finishedAt: string;
  command: string;
  profile: 'short' | 'full';
  machine: { cpus: number; cpuModel: string; memoryGb: number; node: string; load1Before: number | null; load1After: number | null };
  emulator: { latency: string; rate429: number; hangRate: number; nice?: number; note: string };
  /** The CPU floor of one generation, measured before the scenarios (floor.ts). */
  floor?: FloorResult;
  scenarios: ScenarioResult[];
}

export interface CapacityAnswer {
  /** Highest steady rate that passed: light p99 < 50 ms, only deliberate errors, ≥ 90 % of offered finished. */
  sustainedGenerationsPerSecond: number | null;
  /** Gemini calls in flight (mean) at that rate: the concurrent generations the box holds. */
  concurrentGenerations: number | null;
  /** Highest open-loop read rate answered with p99 < 50 ms and no errors. */
  sustainedReadRequestsPerSecond: number | null;
  /** autocannon closed loop at full speed: the most read requests per second, and their p99. */
  readSaturation: { requestsPerSecond: number; p99Ms: number; connections: number } | null;
  /** Every request the mixed scenario answered per second, and whether it passed. */
  mixedRequestsPerSecond: number | null;
  mixedPassed: boolean | null;
  firstLimit: string | null;
  moonshot: {
    offered: number;
    finishedPerSecond: number | null;
    geminiInFlightMean: number | null;
    lightP99Ms: number | null;
    rssMbPeak: number | null;
    cpuPctMean: number | null;
    passed: boolean;
  } | null;
  palette: {
    inline: { eventLoopDelayP99Ms: number | null; lightP99Ms: number | null; paletteP99Ms: number | null } | null;
    pool: { eventLoopDelayP99Ms: number | null; lightP99Ms: number | null; paletteP99Ms: number | null } | null;
  } | null;
  soakMemoryBounded: boolean | null;
}

const find = (results: LoadResults, name: string) => results.scenarios.find((s) => s.name === name);

/**
 * Generations per second that actually arrived in a step. Open-loop arrivals are a Poisson process,
 * so a 60 s step at 5/s brings 300 ± 17 (1σ) of them: the nominal rate is not what the service saw.
 */
export function arrivedPerSecond(step: StepResult): number {
  const n = step.generations?.offered;
  return n !== undefined && step.durationS > 0 ? (round(n / step.durationS, 2) ?? 0) : step.offered.generationsPerSecond;
}

/** Why a step does not meet the bar (light p99 < 50 ms, only deliberate errors, ≥ 90 % of arrivals finished), or null. */
export function failure(step: StepResult): string | null {
  const reasons: string[] = [];
  if (!step.verdict.lightP99Under50ms) reasons.push(`light p99 ${step.lightRoutesLatencyMs.p99} ms`);
  if (!step.verdict.onlyDeliberateErrors) reasons.push('unexpected errors');
  if (finishedTooFew(step)) {
    // With an 8 s median, a step shorter than ~30 s is still filling up when it ends.
    const finished = step.achieved.generationsFinishedPerSecond ?? 0;
    reasons.push(step.durationS - step.warmupS < 30 ? 'too short to reach steady state' : `finished ${finished}/s`);
  }
  return reasons.length ? reasons.join(', ') : null;
}

/** A generation step that finished fewer than 90 % of the generations that arrived. */
function finishedTooFew(step: StepResult): boolean {
  const finished = step.achieved.generationsFinishedPerSecond ?? 0;
  return step.offered.generationsPerSecond > 0 && finished < 0.9 * arrivedPerSecond(step);
}

function passes(step: StepResult): boolean {
  return failure(step) === null;
}

/**
 * Names what gave out first in a failing step, from its own figures and from the way it failed:
 * the light routes need nothing but the event loop and SQLite, so a light p99 over the bar is the
 * main thread's doing even when a queue elsewhere is also filling; too few finished generations
 * point at a queue, memory or the CPU as a whole.
 */
export function firstLimitOf(step: StepResult): string {
  const s = step.service;
  if ((s.rssMbPeak ?? 0) > 1536) return 'memory (RSS over 1.5 GB)';
  const ours = (s.cpuPctMean ?? 0) + (s.emulatorCpuPctMean ?? 0) + (s.harnessCpuPctMean ?? 0);
  const coresSaturated = ours + (s.othersCpuPctMean ?? 0) > 170;
  const cores = !coresSaturated
    ? ''
    : (s.othersCpuPctMean ?? 0) > 40
      ? `; the two cores are saturated, ${s.othersCpuPctMean} % of a core of it by other work on the shared machine`
      : '; the two cores are saturated (service + emulator + load generator)';
  if (finishedTooFew(step)) {
    if ((s.geminiWaitingMax ?? 0) > 0 || (s.queueDepthMax ?? 0) > 0) return 'Gemini semaphore (calls queued for a slot)';
    if ((s.paletteWaitingMax ?? 0) > 0) return 'palette pool (its queue full: generated images waited for room, new generations got 429)';
    if ((s.paletteQueueMax ?? 0) > 4) return 'palette pool (tasks queued for a worker)';
    if (coresSaturated) return `CPU${cores}`;
  }
  if (!step.verdict.lightP99Under50ms) {
    const busy = s.eventLoopUtilizationMean == null ? '' : `${Math.round(s.eventLoopUtilizationMean * 100)} % busy, `;
    return `event loop (${busy}delay p99 ${fmt(s.eventLoopDelayP99Ms)} ms, GC ${fmt(s.gcPct)} % of the time${cores})`;
  }
  if (!step.verdict.onlyDeliberateErrors) return `errors: ${errorsText(step)}`;
  return 'none identified';
}

export function capacityAnswer(results: LoadResults): CapacityAnswer {
  const steady = [...(find(results, 'steady')?.runs[0]?.steps ?? [])].sort((a, b) => a.offered.generationsPerSecond - b.offered.generationsPerSecond);
  // Sustained = the highest rate with every rate below it passing too; the first failure ends the sweep.
  const firstFailIndex = steady.findIndex((s) => !passes(s));
  const firstFail = firstFailIndex >= 0 ? steady[firstFailIndex] : undefined;
  const best = (firstFailIndex >= 0 ? steady.slice(0, firstFailIndex) : steady).at(-1);
  const readsRun = find(results, 'reads')?.runs[0];
  const reads = (readsRun?.steps ?? []).filter((s) => s.verdict.lightP99Under50ms && s.verdict.onlyDeliberateErrors);
  const sat = readsRun?.saturation;
  const mixed = find(results, 'mixed')?.runs[0]?.steps[0];
  const moon = find(results, 'moonshot')?.runs[0]?.steps[0];
  const palette = find(results, 'palette');
  const paletteOf = (run: RunResult | undefined) => {
    const step = run?.steps[0];
    if (!step) return null;
    return {
      eventLoopDelayP99Ms: step.service.eventLoopDelayP99Ms,
      lightP99Ms: step.lightRoutesLatencyMs.p99,
      paletteP99Ms: step.routes['POST /api/v1/palettes']?.latencyMs.p99 ?? null,
    };
  };
  const soak = find(results, 'soak')?.runs[0];
  return {
    sustainedGenerationsPerSecond: best?.offered.generationsPerSecond ?? null,
    concurrentGenerations: best?.service.geminiInFlightMean ?? null,
    sustainedReadRequestsPerSecond: reads.length ? Math.max(...reads.map((s) => s.achieved.requestsPerSecond)) : null,
    readSaturation: sat ? { requestsPerSecond: sat.requestsPerSecond, p99Ms: sat.latencyMs.p99, connections: sat.connections } : null,
    mixedRequestsPerSecond: mixed?.achieved.requestsPerSecond ?? null,
    mixedPassed: mixed ? passes(mixed) : null,
    firstLimit: firstFail ? `${firstFail.label}: ${failure(firstFail)} → ${firstLimitOf(firstFail)}` : null,
    moonshot: moon
      ? {
          offered: moon.offered.generationsPerSecond,
          finishedPerSecond: moon.achieved.generationsFinishedPerSecond,
          geminiInFlightMean: moon.service.geminiInFlightMean,
          lightP99Ms: moon.lightRoutesLatencyMs.p99,
          rssMbPeak: moon.service.rssMbPeak,
          cpuPctMean: moon.service.cpuPctMean,
          passed: passes(moon) && (moon.service.rssMbPeak ?? Infinity) < 1536,
        }
      : null,
    palette: palette
      ? { inline: paletteOf(palette.runs.find((r) => r.env.PALETTE_MODE === 'inline')), pool: paletteOf(palette.runs.find((r) => r.env.PALETTE_MODE === 'pool')) }
      : null,
    soakMemoryBounded: soak?.memoryTrend?.bounded ?? null,
  };
}

// ------------------------------------------------------------------------------------------------
// Charts
// ------------------------------------------------------------------------------------------------

const timeSeries = (run: RunResult, pick: (t: RunResult['ticks'][number]) => number | null): [number, number | null][] =>
  run.ticks.map((t) => [t.t, pick(t)]);

export interface Chart {
  scenario: string;
  file: string;
  svg: string;
}

/** The charts of a run, each with the scenario it illustrates. */
export function charts(results: LoadResults): Chart[] {
  const list: Chart[] = [];
  const add = (scenario: string, file: string, svg: string) => list.push({ scenario, file, svg });
  const steady = find(results, 'steady')?.runs[0];
  if (steady && steady.steps.length > 0) {
    const x = (s: StepResult) => s.offered.generationsPerSecond;
    add('steady', 'latency-vs-load.svg', lineChart({
      title: 'Light routes latency vs offered generation rate (steady)',
      xLabel: 'offered generations per second',
      yLabel: 'ms (log scale)',
      xMin: 0,
      yLog: true,
      series: latencySeries(steady.steps, x),
      hLines: [LATENCY_BUDGET_LINE],
    }));
    add('steady', 'throughput-vs-load.svg', lineChart({
      title: 'Generations finished vs offered (steady)',
      xLabel: 'offered generations per second',
      yLabel: 'generations per second',
      xMin: 0,
      yMin: 0,
      series: [
        { name: 'offered', points: steady.steps.map((s) => [x(s), x(s)]), dashed: true, color: '#999' },
        { name: 'finished', points: steady.steps.map((s) => [x(s), s.achieved.generationsFinishedPerSecond]) },
        { name: 'succeeded', points: steady.steps.map((s) => [x(s), s.achieved.generationsSucceededPerSecond]) },
      ],
    }));
    add('steady', 'cpu-vs-load.svg', lineChart({
      title: 'CPU vs offered generation rate (steady; 100 % = one core, 200 % = the box)',
      xLabel: 'offered generations per second',
      yLabel: '% of one core',
      xMin: 0,
      yMin: 0,
      series: [
        { name: 'service', points: steady.steps.map((s) => [x(s), s.service.cpuPctMean]) },
        { name: 'emulator', points: steady.steps.map((s) => [x(s), s.service.emulatorCpuPctMean]) },
        { name: 'load generator', points: steady.steps.map((s) => [x(s), s.service.harnessCpuPctMean]) },
      ],
      hLines: [{ y: 200, label: '2 cores', color: '#d62728' }],
    }));
    const timeline = resourceTimeline(steady, 'Steady sweep');
    add('steady', 'steady-cpu.svg', timeline.cpu);
    add('steady', 'steady-memory.svg', timeline.memory);
  }
  const reads = find(results, 'reads')?.runs[0];
  if (reads && reads.steps.length > 0) {
    const x = (s: StepResult) => Number(s.label.split(' ')[0]);
    add('reads', 'reads-latency.svg', lineChart({
      title: 'Read routes latency vs offered request rate (no generation running)',
      xLabel: 'requests per second offered',
      yLabel: 'ms (log scale)',
      xMin: 0,
      yLog: true,
      series: latencySeries(reads.steps, x),
      hLines: [LATENCY_BUDGET_LINE],
    }));
  }
  const soak = find(results, 'soak')?.runs[0];
  if (soak) {
    const timeline = resourceTimeline(soak, 'Soak');
    add('soak', 'soak-cpu.svg', timeline.cpu);
    add('soak', 'soak-memory.svg', timeline.memory);
  }
  const moon = find(results, 'moonshot')?.runs[0];
  if (moon) {
    const timeline = resourceTimeline(moon, 'Moonshot');
    add('moonshot', 'moonshot-cpu.svg', timeline.cpu);
    add('moonshot', 'moonshot-memory.svg', timeline.memory);
    add('moonshot', 'moonshot-inflight.svg', lineChart({
      title: 'Moonshot: generations in flight and finished per second',
      xLabel: 'seconds',
      yLabel: 'count',
      yMin: 0,
      series: [
        { name: 'Gemini calls in flight', points: timeSeries(moon, (t) => t.geminiInFlight) },
        { name: 'palette queue', points: timeSeries(moon, (t) => t.paletteQueue) },
        { name: 'finished per second', points: perSecond(moon, (t) => t.finished) },
      ],
    }));
  }
  const burst = find(results, 'burst')?.runs[0];
  if (burst) {
    add('burst', 'burst.svg', lineChart({
      title: 'Burst against the defaults: queue and semaphore',
      xLabel: 'seconds',
      yLabel: 'generations',
      yMin: 0,
      series: [
        { name: 'queue depth', points: timeSeries(burst, (t) => t.queueDepth) },
        { name: 'Gemini in flight', points: timeSeries(burst, (t) => t.geminiInFlight) },
        { name: 'light p99 per second, ms', points: lightP99PerSecond(burst), dashed: true },
      ],
    }));
  }
  const palette = find(results, 'palette');
  if (palette && palette.runs.length > 0) {
    add('palette', 'palette-inline-vs-pool.svg', lineChart({
      title: 'Palette on the main thread vs in the pool, per second',
      xLabel: 'seconds since the service started',
      yLabel: 'ms, log scale (delay: above the 10 ms sampling)',
      yLog: true,
      yMin: 1,
      series: palette.runs.flatMap((run) => {
        const mode = run.env.PALETTE_MODE === 'inline' ? 'inline' : `pool of ${run.env.PALETTE_WORKERS ?? 'default'}`;
        return [
          { name: `${mode}: event-loop delay p99`, points: timeSeries(run, (t) => (t.eventLoopDelayP99Ms === null ? null : Math.max(0, t.eventLoopDelayP99Ms - 10))) },
          { name: `${mode}: light routes p99`, points: lightP99PerSecond(run), dashed: true },
        ];
      }),
      hLines: [{ y: 50, label: '50 ms', color: '#d62728' }],
    }));
  }
  return list;
}

function perSecond(run: RunResult, pick: (t: RunResult['ticks'][number]) => number | null): [number, number | null][] {
  const out: [number, number | null][] = [];
  for (let i = 1; i < run.ticks.length; i++) {
    const a = pick(run.ticks[i - 1]);
    const b = pick(run.ticks[i]);
    const dt = run.ticks[i].t - run.ticks[i - 1].t;
    out.push([run.ticks[i].t, a === null || b === null || dt <= 0 ? null : (b - a) / dt]);
  }
  return out;
}

/** Per-second p99 of the light routes over every step of a run, on the run's time axis. */
function lightP99PerSecond(run: RunResult): [number, number | null][] {
  return run.steps.flatMap((s) => s.lightP99BySecond ?? []);
}

/** Two charts of a run over time: CPU by thread role (with the emulator and load generator), and memory. */
const LATENCY_BUDGET_LINE = { y: 50, label: '50 ms budget', color: '#d62728' };

/** Light-route p50/p95/p99 and the event-loop delay p99 of each step, against `x` of the step. */
function latencySeries(steps: StepResult[], x: (s: StepResult) => number): Series[] {
  return [
    { name: 'p50', points: steps.map((s) => [x(s), s.lightRoutesLatencyMs.p50]) },
    { name: 'p95', points: steps.map((s) => [x(s), s.lightRoutesLatencyMs.p95]) },
    { name: 'p99', points: steps.map((s) => [x(s), s.lightRoutesLatencyMs.p99]) },
    { name: 'event-loop delay p99', points: steps.map((s) => [x(s), s.service.eventLoopDelayP99Ms]), dashed: true },
  ];
}

function resourceTimeline(run: RunResult, title: string): { cpu: string; memory: string } {
  const role = (pick: (t: NonNullable<RunResult['ticks'][number]['threadCpuPct']>) => number) => timeSeries(run, (t) => (t.threadCpuPct ? pick(t.threadCpuPct) : null));
  const cpu = lineChart({
    title: `${title}: CPU (100 % = one core)`,
    xLabel: 'seconds since the service started',
    yLabel: '% of one core',
    yMin: 0,
    series: [
      { name: 'service, all threads', points: timeSeries(run, (t) => t.cpuPct) },
      { name: 'event loop', points: role((c) => c.main) },
      { name: 'V8 GC/JIT threads', points: role((c) => c.v8) },
      { name: 'libvips (decode)', points: role((c) => c.libvips + c.workers) },
      { name: 'emulator', points: timeSeries(run, (t) => t.emulatorCpuPct), dashed: true },
      { name: 'load generator', points: timeSeries(run, (t) => t.harnessCpuPct), dashed: true },
      { name: 'others on the machine', points: timeSeries(run, (t) => t.othersCpuPct ?? null), dashed: true, color: '#7f7f7f' },
    ],
    hLines: [{ y: 200, label: 'both cores', color: '#d62728' }],
  });
  const memory = lineChart({
    title: `${title}: memory`,
    xLabel: 'seconds since the service started',
    yLabel: 'MB',
    yMin: 0,
    series: [
      { name: 'service RSS', points: timeSeries(run, (t) => t.rssMb) },
      { name: 'JS heap used (all isolates)', points: timeSeries(run, (t) => t.heapUsedMb) },
    ],
    hLines: [{ y: 1536, label: '1.5 GB', color: '#d62728' }],
  });
  return { cpu, memory };
}

// ------------------------------------------------------------------------------------------------
// Markdown
// ------------------------------------------------------------------------------------------------

/** Where a report goes, under the repository root: the generated tables and, beside them, the charts. */
export function reportPaths(root: string): { resultsFile: string; chartDir: string } {
  const chartDir = join(root, 'docs', 'capacity');
  return { resultsFile: join(chartDir, 'results.md'), chartDir };
}

/** The first lines of the generated file: what it is, what writes it, where the prose lives. */
export const GENERATED_HEADER = [
  '# Load-test results (generated)',
  '',
  'Written by `npm run load -- --report` (or `npm run load -- --report-from=FILE[,FILE…]` from saved results) through',
  '`test/load/report.ts`: the next report overwrites this whole file and the charts beside it, so do not edit it by',
  'hand. What the numbers mean: [the summary](../capacity.md) and [the method](method.md).',
].join('\n');

const fmt = (v: number | null | undefined, unit = '') => (v === null || v === undefined || Number.isNaN(v) ? '–' : `${v}${unit}`);

function table(head: string[], rows: (string | number | null | undefined)[][]): string {
  const cell = (v: string | number | null | undefined) => (v === null || v === undefined ? '–' : String(v).replace(/\|/g, '\\|'));
  return [`| ${head.join(' | ')} |`, `|${head.map(() => '---').join('|')}|`, ...rows.map((r) => `| ${r.map(cell).join(' | ')} |`)].join('\n');
}

function errorsText(step: StepResult): string {
  const all = { ...step.errors };
  for (const [k, n] of Object.entries(step.generations?.finished ?? {})) if (k !== 'succeeded') all[`gen ${k}`] = n;
  const entries = Object.entries(all);
  return entries.length === 0 ? 'none' : entries.map(([k, n]) => `${k}: ${n}`).join('; ');
}

function stepRows(steps: StepResult[]): string {
  return table(
    ['step', 'offered gen/s (nominal / arrived)', 'finished gen/s', 'req/s answered', 'light p50 / p95 / p99 ms', 'in flight (mean)', 'CPU % svc / emu / load gen / others', 'CPU ms per generation: service (event loop / V8 GC+JIT threads / libvips decode / palette JS / libuv fs)', 'RSS peak MB', 'ELD p99 ms', 'GC % (major)', 'queue max', 'errors (status code: n)', 'meets the bar'],
    steps.map((s) => [
      s.label,
      s.offered.generationsPerSecond > 0 ? `${s.offered.generationsPerSecond} / ${fmt(arrivedPerSecond(s))}` : 0,
      fmt(s.achieved.generationsFinishedPerSecond),
      s.achieved.requestsPerSecond,
      `${fmt(s.lightRoutesLatencyMs.p50)} / ${fmt(s.lightRoutesLatencyMs.p95)} / ${fmt(s.lightRoutesLatencyMs.p99)}`,
      fmt(s.service.geminiInFlightMean),
      `${fmt(s.service.cpuPctMean)} / ${fmt(s.service.emulatorCpuPctMean)} / ${fmt(s.service.harnessCpuPctMean)} / ${fmt(s.service.othersCpuPctMean)}`,
      perGenerationText(s),
      fmt(s.service.rssMbPeak),
      fmt(s.service.eventLoopDelayP99Ms),
      `${fmt(s.service.gcPct)} (${fmt(s.service.gcMajorPct)})`,
      fmt(s.service.queueDepthMax),
      errorsText(s),
      failure(s) === null ? 'yes' : `no: ${failure(s)}`,
    ]),
  );
}

function perGenerationText(s: StepResult): string {
  const p = s.service.perGenerationMs;
  if (!p || p.service === null) return '–';
  return `${fmt(p.service)} (${fmt(p.mainThreadCpu)} / ${fmt(p.v8HelpersCpu)} / ${fmt(p.libvipsCpu)} / ${fmt(p.paletteWorkersCpu)} / ${fmt(p.libuvCpu)})`;
}

function routeRows(step: StepResult): string {
  return table(
    ['route', 'requests', 'p50 ms', 'p95 ms', 'p99 ms', 'max ms', 'outcomes'],
    Object.entries(step.routes).map(([route, r]) => [
      route,
      r.latencyMs.count,
      fmt(r.latencyMs.p50),
      fmt(r.latencyMs.p95),
      fmt(r.latencyMs.p99),
      fmt(r.latencyMs.max),
      Object.entries(r.outcomes)
        .map(([k, n]) => `${k}: ${n}`)
        .join(', '),
    ]),
  );
}

function generationRows(step: StepResult): string {
  const g = step.generations;
  if (!g || g.offered === 0) return '';
  const t = g.serverTimingsMs;
  return [
    `Generations: ${g.offered} offered, ${g.accepted} accepted, ${g.rejected429} refused with 429, ${g.rejectedOther} other create failures, ` +
      `${g.unfinishedAtEnd} still running at the end; finished: ${Object.entries(g.finished).map(([k, n]) => `${k} ${n}`).join(', ') || 'none'}.`,
    '',
    table(
      ['server timing (succeeded)', 'p50 ms', 'p95 ms', 'p99 ms', 'max ms'],
      (['queueMs', 'geminiMs', 'uploadMs', 'paletteMs', 'totalMs'] as const).map((k) => [k, fmt(t[k].p50), fmt(t[k].p95), fmt(t[k].p99), fmt(t[k].max)]),
    ),
  ].join('\n');
}

/** The distributed scenario's answers and its runs side by side (docs/scaling.md explains them). */
export function distributedRows(d: DistributedResult): string {
  const s = d.summary;
  const cpu = (p: Record<string, number | null> | null) =>
    p ? `${fmt(p.services)} (PostgreSQL ${fmt(p.postgres)} + server ${fmt(p.postgresServer)}, Redis ${fmt(p.redis)}, nginx ${fmt(p.nginx)}; emulator ${fmt(p.emulator)}, load generator ${fmt(p.loadGenerator)})` : 'not run';
  return [
    `Topology: ${s.topology}. Settings: ${s.settings.rate} generations/s, global Gemini limit ${s.settings.geminiLimit}, QUEUE_LOCK_MS=${s.settings.queueLockMs}, ` +
      `emulator \`${s.settings.latency}\` (429 rate ${s.settings.rate429}, hang rate ${s.settings.hangRate}); measured window ${s.settings.windowS} s, ` +
      `then ${s.settings.afterKillS} s after the kill${s.settings.restartAfterS === null ? '' : `, the instance started again after ${s.settings.restartAfterS} s`}.`,
    '',
    table(
      ['question', 'answer'],
      [
        ['generations lost (not final, or failed INTERRUPTED): distributed / embedded', `${fmt(s.lostGenerations.distributed)} / ${fmt(s.lostGenerations.embedded)} (target 0)`],
        [
          'jobs taken over; longest wait from the kill to the job\'s next start / to its Gemini call\'s new start',
          s.takeover ? `${s.takeover.jobs}; ${fmt(s.takeover.longestJobRestartMs, ' ms')} / ${fmt(s.takeover.longestGeminiRestartMs, ' ms')}` : 'no kill',
        ],
        ['emulator\'s most concurrent calls: distributed / embedded (global limit)', `${fmt(s.emulatorMaxInFlight.distributed)} / ${fmt(s.emulatorMaxInFlight.embedded)} (${s.emulatorMaxInFlight.limit})`],
        ['CPU ms per generation, embedded: services (data stores; others)', cpu(s.cpuPerGenerationMs.embedded)],
        ['CPU ms per generation, distributed: services (data stores; others)', cpu(s.cpuPerGenerationMs.distributed)],
        [
          'distributed ÷ embedded, services / with PostgreSQL, Redis and nginx',
          `${fmt(s.cpuPerGenerationMs.servicesRatio)} / ${fmt(s.cpuPerGenerationMs.withDataStoresRatio)} (target ≤ 1.2: ${s.cpuPerGenerationMs.met === null ? '–' : s.cpuPerGenerationMs.met ? 'met' : 'not met'})`,
        ],
        ['nginx: requests passed to the other instance / 502-504 answers', s.balancer ? `${s.balancer.passedToNextUpstream} / ${s.balancer.gatewayErrors}` : '–'],
      ],
    ),
  ].join('\n');
}

function memoryDetailRows(d: MemoryDetail): string {
  return [
    `Memory by kind (\`--memory-detail\`: the service's own samples, ${d.samples} over the last ${d.windowS} s; start and end are means of the first and last ${d.edgeS} s):`,
    '',
    table(
      ['kind', 'start MB', 'end MB', 'slope MB/min', 'second half MB/min'],
      d.rows.map((r) => [r.kind.replace(/^ {2}/, '↳ '), fmt(r.startMb), fmt(r.endMb), fmt(r.slopeMbPerMin), fmt(r.secondHalfSlopeMbPerMin)]),
    ),
  ].join('\n');
}

function profileRows(profiles: ProfileSummary[]): string {
  if (profiles.length === 0) return '';
  const parts: string[] = [];
  for (const p of profiles) {
    const thread = /\.\d+\.(\d+)\.\d+\.cpuprofile$/.exec(p.file)?.[1];
    parts.push(
      `CPU profile \`${p.file}\` (${thread === '0' ? 'main thread, the event loop' : `worker thread ${thread}`}): ${p.durationS} s, busy ${Math.round(p.busyShare * 100)} % of it.`,
      '',
      table(
        ['component (self time)', 'ms', 'share of busy'],
        p.components.slice(0, 8).map((c) => [c.name, c.ms, `${Math.round(c.shareOfBusy * 1000) / 10} %`]),
      ),
      '',
      table(
        ['function (self time)', 'component', 'ms', 'share of busy'],
        p.functions.slice(0, 10).map((f) => [`\`${f.name}\``, f.component, f.ms, `${Math.round(f.shareOfBusy * 1000) / 10} %`]),
      ),
      '',
    );
  }
  return parts.join('\n');
}

/**
 * docs/capacity/results.md, whole: `results` gives every table and chart (the charts sit beside the
 * file); each of `extras` (e.g. a separate run with the CPU profiler on, whose overhead would skew
 * the main numbers) adds its command, its step tables and its profiles.
 */
export function markdown(results: LoadResults, extras: LoadResults[] = []): string {
  const answer = capacityAnswer(results);
  const lines: string[] = [];
  const m = results.machine;
  lines.push(
    GENERATED_HEADER,
    '',
    `## Run of ${results.startedAt} (${results.profile} profile)`,
    '',
    `Command: \`${results.command}\``,
    '',
    `Machine: ${m.cpus} × ${m.cpuModel}, ${m.memoryGb} GB RAM, Node ${m.node}; 1-minute load average ${fmt(m.load1Before)} before, ${fmt(m.load1After)} after ` +
      '(the machine is shared: other work adds to every CPU figure). ' +
      `Gemini emulator: its own process on the same cores${results.emulator.nice ? ` at niceness ${results.emulator.nice}` : ''}, latency \`${results.emulator.latency}\`, ` +
      `429 rate ${results.emulator.rate429}, hang rate ${results.emulator.hangRate}. ${results.emulator.note}`,
    '',
    '### Capacity answer (derived from the tables below)',
    '',
    table(
      ['question', 'answer'],
      [
        ['highest steady generation rate passing, with every lower rate passing too (light p99 < 50 ms, only deliberate errors, ≥ 90 % of arrivals finished)', fmt(answer.sustainedGenerationsPerSecond, ' /s')],
        ['concurrent generations (Gemini calls in flight) at that rate', fmt(answer.concurrentGenerations)],
        ['read requests/s answered with p99 < 50 ms (open loop, status + history, no generation running)', fmt(answer.sustainedReadRequestsPerSecond, ' /s')],
        [
          'read requests/s at saturation (autocannon, closed loop)',
          answer.readSaturation ? `${answer.readSaturation.requestsPerSecond} /s with ${answer.readSaturation.connections} connections, p99 ${answer.readSaturation.p99Ms} ms` : 'not run',
        ],
        ['requests/s answered in the mixed scenario', `${fmt(answer.mixedRequestsPerSecond, ' /s')} (${answer.mixedPassed === null ? '–' : answer.mixedPassed ? 'passed' : 'failed'})`],
        ['first steady step failing, and what gave out', answer.firstLimit ?? 'no step failed'],
        [
          `moonshot (${answer.moonshot?.offered ?? '–'}/s offered)`,
          answer.moonshot
            ? `${fmt(answer.moonshot.finishedPerSecond)} finished/s, ${fmt(answer.moonshot.geminiInFlightMean)} in flight, light p99 ${fmt(answer.moonshot.lightP99Ms)} ms, RSS peak ${fmt(answer.moonshot.rssMbPeak)} MB, service CPU ${fmt(answer.moonshot.cpuPctMean)} % → ${answer.moonshot.passed ? 'met' : 'not met'}`
            : 'not run',
        ],
        [
          'palette inline → pool: event-loop delay p99 / light p99 / palette p99 (ms)',
          answer.palette
            ? `${fmt(answer.palette.inline?.eventLoopDelayP99Ms)} / ${fmt(answer.palette.inline?.lightP99Ms)} / ${fmt(answer.palette.inline?.paletteP99Ms)} → ${fmt(answer.palette.pool?.eventLoopDelayP99Ms)} / ${fmt(answer.palette.pool?.lightP99Ms)} / ${fmt(answer.palette.pool?.paletteP99Ms)}`
            : 'not run',
        ],
        ['memory bounded under the soak', answer.soakMemoryBounded === null ? 'not run' : answer.soakMemoryBounded ? 'yes' : 'NO'],
      ],
    ),
    '',
  );
  const chartList = charts(results);
  for (const scenario of results.scenarios) {
    lines.push(`### ${scenario.name}`, '', `${scenario.description}.`, '');
    if (scenario.distributed) lines.push(distributedRows(scenario.distributed), '');
    for (const run of scenario.runs) {
      const harnessDelay = Math.max(0, ...run.steps.map((s) => s.service.harnessEventLoopDelayP99Ms ?? 0));
      lines.push(
        `**${run.name}** — settings: \`${Object.entries(run.env).map(([k, v]) => `${k}=${v}`).join(' ') || 'defaults'}\`; ` +
          `load generator: worst arrival lag ${run.maxArrivalLagMs} ms, own event-loop delay p99 ≤ ${Math.round(harnessDelay)} ms (p99 over the seconds of each step), ` +
          `${run.dropped} requests dropped by its outstanding-request guard.`,
        '',
      );
      lines.push(stepRows(run.steps), '');
      if (run.saturation) {
        const sat = run.saturation;
        lines.push(
          `autocannon at full speed, ${sat.connections} connections, ${sat.durationS} s: ${sat.requestsPerSecond} req/s, latency p50 ${sat.latencyMs.p50} / p90 ${sat.latencyMs.p90} / p99 ${sat.latencyMs.p99} / max ${sat.latencyMs.max} ms; ` +
            `${sat.non2xx} non-2xx, ${sat.errors} errors, ${sat.timeouts} timeouts.`,
          '',
        );
      }
      const detailed = run.steps.at(-1);
      if (detailed) {
        lines.push(`Routes in step "${detailed.label}":`, '', routeRows(detailed), '');
        const gen = generationRows(detailed);
        if (gen) lines.push(gen, '');
      }
      // Only the soak runs long enough for a memory trend to mean something.
      if (run.memoryTrend && scenario.name === 'soak') {
        const t = run.memoryTrend;
        lines.push(
          `Memory over the last ${t.windowS} s: RSS slope ${fmt(t.rssSlopeMbPerMin)} MB/min overall, ${t.rssSlopeByThirdMbPerMin.map((v) => fmt(v)).join(' → ')} MB/min by thirds, ` +
            `${fmt(t.rssSecondHalfSlopeMbPerMin)} MB/min over the second half; JS heap slope ${fmt(t.heapSlopeMbPerMin)} MB/min; ` +
            `RSS mean ${fmt(t.rssFirstHalfMeanMb)} MB in the first half, ${fmt(t.rssSecondHalfMeanMb)} MB in the second. ` +
            `Floors (each minute's lowest, what stays after the collections) over the second half: RSS ${fmt(t.rssFloorSecondHalfSlopeMbPerMin)} MB/min ` +
            `(${fmt(t.rssPerDayMb)} MB a day at that pace), JS heap ${fmt(t.heapFloorSecondHalfSlopeMbPerMin)} MB/min → ` +
            `${t.bounded ? 'bounded (no growth trend)' : `GROWING (flat means floors ≤ ${FLAT_MB_PER_MIN} MB/min over the second half)`}.`,
          '',
        );
      }
      if (run.memoryDetail) lines.push(memoryDetailRows(run.memoryDetail), '');
      const profiles = profileRows(run.profiles);
      if (profiles) lines.push(profiles);
    }
    for (const chart of chartList.filter((c) => c.scenario === scenario.name)) lines.push(`![${chart.file}](${chart.file})`, '');
  }
  for (const extra of extras) {
    lines.push(
      `### Separate run: \`${extra.command}\``,
      '',
      `Started ${extra.startedAt}; 1-minute load average ${fmt(extra.machine.load1Before)} before, ${fmt(extra.machine.load1After)} after. ` +
        'Numbers from a run with the CPU profiler on are a little pessimistic; they are here for the profiles.',
      '',
    );
    for (const scenario of extra.scenarios) {
      for (const run of scenario.runs) {
        lines.push(`**${scenario.name} / ${run.name}** — settings: \`${Object.entries(run.env).map(([k, v]) => `${k}=${v}`).join(' ')}\``, '', stepRows(run.steps), '');
        const profiles = profileRows(run.profiles);
        if (profiles) lines.push(profiles);
      }
    }
  }
  return `${lines.join('\n').trimEnd()}\n`;
}

/**
 * Writes the charts and docs/capacity/results.md under `root` (the repository, or a scratch
 * directory in tests), replacing both whole; returns the files written. The hand-written pages
 * next to them are not touched.
 */
export function writeReport(results: LoadResults, root: string, extras: LoadResults[] = []): string[] {
  const { resultsFile, chartDir } = reportPaths(root);
  mkdirSync(chartDir, { recursive: true });
  const written: string[] = [];
  for (const chart of charts(results)) {
    writeFileSync(join(chartDir, chart.file), chart.svg);
    written.push(join(chartDir, chart.file));
  }
  writeFileSync(resultsFile, markdown(results, extras));
  written.push(resultsFile);
  return written;
}
