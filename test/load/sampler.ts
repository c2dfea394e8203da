/**
 * Once a second during a scenario: the service's `/metrics` (what its dashboards see) and /proc of
 * the service and emulator processes (ground truth for CPU and RSS, worker threads included).
 */
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import { parsePrometheusText, sumOf, type MetricSample } from './prometheus-text';
import { cpus } from 'node:os';
import { loadAverage, readMachineCpu, readProc, readThreadCpu, type ProcSample, type ThreadCpu } from './processes';

/** Node's event-loop delay histogram samples every 10 ms, so its values include those 10 ms. */
export const ELD_RESOLUTION_MS = 10;

export interface Tick {
  /** Seconds since the scenario started. */
  t: number;
  /** Service CPU, % of one core (200 % = both cores), from /proc. */
  cpuPct: number | null;
  rssMb: number | null;
  emulatorCpuPct: number | null;
  harnessCpuPct: number;
  /** The load generator's own event-loop delay p99 over the last second, ms (resolution excluded):
   * when high, client-side latencies include the harness's lateness, not only the service's. */
  harnessEventLoopDelayP99Ms: number;
  /** `nodejs_eventloop_delay_p99` of the last second, ms, as exported (includes the 10 ms resolution). */
  eventLoopDelayP99Ms: number | null;
  eventLoopDelayMaxMs: number | null;
  eventLoopUtilization: number | null;
  heapUsedMb: number | null;
  geminiInFlight: number | null;
  geminiWaiting: number | null;
  queueDepth: number | null;
  jobsActive: number | null;
  paletteQueue: number | null;
  /** Generated images waiting for room in a full palette queue (new generations get 429 meanwhile). */
  paletteWaiting: number | null;
  /** Seconds of GC pauses since start (`v8js_gc_duration_sum`, all kinds), and of major ones. */
  gcSeconds: number | null;
  gcMajorSeconds: number | null;
  /** Generations finished so far (all statuses), from `pipeline_generations_total`. */
  finished: number | null;
  succeeded: number | null;
  /** Service's own process CPU metric (share of all cores, 0..1 per core summed over states), to compare with /proc. */
  metricCpuUtilization: number | null;
  /** Service CPU by thread role, % of one core (from /proc/<pid>/task): true CPU, unlike utilization. */
  threadCpuPct: ThreadCpu | null;
  /** The whole machine's CPU, % of one core (200 % = both cores busy), and what is left after the
   * service, emulator and load generator: other people's work on the shared machine. */
  machineCpuPct: number | null;
  othersCpuPct: number | null;
  /** The 1-minute load average of the machine. */
  load1: number | null;
  /** Sockets in use by the harness's HTTP client. */
  clientInFlight: number;
  /** The service's `overload_shedding` gauge: 1 while it refuses new work as saturated. */
  shedding?: number | null;
}

const nn = (v: number) => (Number.isFinite(v) ? v : null);

export class Sampler {
  readonly ticks: Tick[] = [];
  private timer: NodeJS.Timeout | undefined;
  private readonly t0 = performance.now();
  private prev: { at: number; service?: ProcSample; threads?: ThreadCpu; emulator?: ProcSample; harness: NodeJS.CpuUsage; machine?: { busy: number; total: number } } | undefined;
  private scraping = false;
  private readonly ownDelay = monitorEventLoopDelay({ resolution: ELD_RESOLUTION_MS });

  constructor(
    private readonly target: { metricsUrl: string; pid?: number; emulatorPid?: number },
    private readonly clientInFlight: () => number,
    private readonly intervalMs = 1000,
  ) {}

  start(): void {
    this.ownDelay.enable();
    this.prev = {
      at: performance.now(),
      service: this.procOf(this.target.pid),
      threads: this.threadsOf(this.target.pid),
      emulator: this.procOf(this.target.emulatorPid),
      harness: process.cpuUsage(),
      machine: readMachineCpu(),
    };
    this.timer = setInterval(() => void this.sample(), this.intervalMs);
  }

  async stop(): Promise<Tick[]> {
    clearInterval(this.timer);
    this.ownDelay.disable();
    return this.ticks;
  }

  private procOf(pid: number | undefined): ProcSample | undefined {
    return pid === undefined ? undefined : readProc(pid);
  }

  private threadsOf(pid: number | undefined): ThreadCpu | undefined {
    return pid === undefined ? undefined : readThreadCpu(pid);
  }

  private async sample(): Promise<void> {
    if (this.scraping || !this.prev) return; // a slow scrape is skipped, never stacked
    this.scraping = true;
    try {
      const now = performance.now();
      const service = this.procOf(this.target.pid);
      const threads = this.threadsOf(this.target.pid);
      const emulator = this.procOf(this.target.emulatorPid);
      const harness = process.cpuUsage();
      const machine = readMachineCpu();
      const dt = (now - this.prev.at) / 1000;
      const pct = (a?: ProcSample, b?: ProcSample) => (a && b && dt > 0 ? ((b.cpuSeconds - a.cpuSeconds) / dt) * 100 : null);
      const harnessPct = ((harness.user + harness.system - this.prev.harness.user - this.prev.harness.system) / 1e6 / dt) * 100;
      const cpuPct = pct(this.prev.service, service);
      const emulatorCpuPct = pct(this.prev.emulator, emulator);
      const before = this.prev.threads;
      const threadCpuPct =
        before && threads && dt > 0
          ? (Object.fromEntries(
              // A thread that exits takes its CPU time out of the sum (libvips starts and stops
              // threads): per-role figures are lower bounds, never negative; cpuPct is the exact total.
              Object.entries(threads).map(([role, s]) => [role, Math.max(0, ((s - before[role as keyof ThreadCpu]) / dt) * 100)]),
            ) as unknown as ThreadCpu)
          : null;
      const m0 = this.prev.machine;
      // Busy share of all cores over the machine's own clock, scaled to "% of one core".
      const machineCpuPct = m0 && machine && machine.total > m0.total ? ((machine.busy - m0.busy) / (machine.total - m0.total)) * cpus().length * 100 : null;
      const ours = (cpuPct ?? 0) + (emulatorCpuPct ?? 0) + harnessPct;
      this.prev = { at: now, service, threads, emulator, harness, machine };

      let m: MetricSample[] = [];
      try {
        const res = await fetch(this.target.metricsUrl, { signal: AbortSignal.timeout(Math.max(500, this.intervalMs - 100)) });
        if (res.ok) m = parsePrometheusText(await res.text());
      } catch {
        // A missed scrape leaves gaps (nulls), it does not stop the run.
      }
      const get = (name: string, where?: Record<string, string>) => nn(sumOf(m, name, where));
      const ms = (v: number | null) => (v === null ? null : v * 1000);
      const heap = get('v8js_memory_heap_used');
      const rssFromMetric = get('process_memory_usage');
      this.ticks.push({
        t: Math.round((now - this.t0) / 100) / 10,
        cpuPct,
        rssMb: service ? service.rssBytes / 1048576 : rssFromMetric === null ? null : rssFromMetric / 1048576,
        emulatorCpuPct,
        harnessCpuPct: harnessPct,
        harnessEventLoopDelayP99Ms: Math.max(0, this.ownDelay.percentile(99) / 1e6 - ELD_RESOLUTION_MS),
        eventLoopDelayP99Ms: ms(get('nodejs_eventloop_delay_p99')),
        eventLoopDelayMaxMs: ms(get('nodejs_eventloop_delay_max')),
        eventLoopUtilization: get('nodejs_eventloop_utilization'),
        heapUsedMb: heap === null ? null : heap / 1048576,
        geminiInFlight: get('gemini_semaphore_in_flight'),
        geminiWaiting: get('gemini_semaphore_waiting'),
        queueDepth: get('pipeline_queue_depth'),
        jobsActive: get('pipeline_jobs_active'),
        paletteQueue: get('palette_pool_queue_size'),
        paletteWaiting: get('palette_pool_waiting'),
        gcSeconds: get('v8js_gc_duration_sum'),
        gcMajorSeconds: get('v8js_gc_duration_sum', { v8js_gc_type: 'major' }),
        finished: get('pipeline_generations_total'),
        succeeded: get('pipeline_generations_total', { status: 'succeeded' }),
        metricCpuUtilization: get('process_cpu_utilization'),
        threadCpuPct,
        machineCpuPct,
        othersCpuPct: machineCpuPct === null ? null : Math.max(0, machineCpuPct - ours),
        load1: loadAverage()?.[0] ?? null,
        clientInFlight: this.clientInFlight(),
        shedding: get('overload_shedding'),
      });
      this.ownDelay.reset();
    } finally {
      this.scraping = false;
    }
  }
}
