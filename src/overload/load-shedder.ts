import { HttpStatus, Injectable, Logger, OnApplicationBootstrap, OnModuleDestroy } from '@nestjs/common';
import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import { AppError } from '../common/app-error';
import { AppConfig } from '../config/app-config';
import { PaletteService } from '../palette/palette.service';
import { AppMetrics } from '../telemetry/app-metrics';
import { SaturationSample, SheddingPolicy, usableCores } from './shedding-policy';

/** What is refused while shedding: only new work; reads, events and probes are always served. */
export type SheddableWork = 'generation' | 'upload';

/**
 * Refuses new work early and cheaply when this instance is saturated, measured rather than counted:
 * the event loop's delay (p99 over the last period) and utilization, how full the palette queue is,
 * and the share of its CPU the process itself uses (so a machine made slow by other processes is not
 * taken for an overloaded instance). Sampled every OVERLOAD_SAMPLE_MS; SheddingPolicy decides, with
 * hysteresis. While shedding, new
 * generations and image uploads get `503 OVERLOADED` + `Retry-After` before any work is done for
 * them; status polls, history, event streams and health stay fast because the work that made them
 * slow is no longer admitted. A metric (`overload.shedding`, `overload.refusals`) and a log line
 * mark when shedding starts and stops.
 */
@Injectable()
export class LoadShedder implements OnApplicationBootstrap, OnModuleDestroy {
  private readonly logger = new Logger(LoadShedder.name);
  private readonly policy: SheddingPolicy;
  private readonly delay = monitorEventLoopDelay({ resolution: 10 });
  private lastUtilization = performance.eventLoopUtilization();
  private lastCpu = process.cpuUsage();
  private lastCpuAt = performance.now();
  private readonly cores = usableCores(availableParallelism(), readCgroupCpuMax());
  private timer: NodeJS.Timeout | undefined;
  private since = 0;

  constructor(
    private readonly config: AppConfig,
    private readonly palette: PaletteService,
    private readonly metrics: AppMetrics,
  ) {
    const o = config.overload;
    // The line is a share of the usable cores, but never more than one whole core: the event loop
    // is one thread, and a process using a core's worth of CPU is busy with its own work on a box
    // of any size.
    const cpuLine = Math.min(o.processCpuShare, 1 / this.cores);
    this.policy = new SheddingPolicy({
      enter: {
        eventLoopDelayP99Ms: o.eventLoopDelayMs,
        eventLoopUtilization: o.eventLoopUtilization,
        paletteQueueFill: o.paletteQueueFill,
        processCpuShare: cpuLine,
      },
      exit: {
        eventLoopDelayP99Ms: o.eventLoopDelayMs * EXIT_DELAY_FACTOR,
        eventLoopUtilization: Math.max(0, o.eventLoopUtilization - EXIT_MARGIN),
        paletteQueueFill: o.paletteQueueFill * EXIT_FILL_FACTOR,
        processCpuShare: cpuLine * EXIT_CPU_FACTOR,
      },
      enterSamples: ENTER_SAMPLES,
      exitSamples: EXIT_SAMPLES,
    });
    metrics.gauge('overload.shedding', 'Whether this instance refuses new work because it is saturated (1) or not (0)', () => (this.shedding ? 1 : 0), '1');
  }

  /**
   * Measures from the end of start-up on: loading and wiring the app keeps the event loop busy for a
   * moment, which is not saturation, and the first period starts clean.
   */
  onApplicationBootstrap(): void {
    if (!this.config.overload.enabled || this.config.overload.sampleMs === 0) return;
    this.delay.enable();
    this.sample();
    this.timer = setInterval(() => this.evaluate(this.sample()), this.config.overload.sampleMs);
    this.timer.unref();
  }

  onModuleDestroy(): void {
    clearInterval(this.timer);
    this.delay.disable();
  }

  get shedding(): boolean {
    return this.config.overload.enabled && this.policy.isShedding;
  }

  /** Throws `503 OVERLOADED` while shedding; call it before doing any work for `work`. */
  assertAccepting(work: SheddableWork): void {
    if (!this.shedding) return;
    this.metrics.recordOverloadRefusal(work);
    throw new AppError(HttpStatus.SERVICE_UNAVAILABLE, 'OVERLOADED', 'This instance is saturated and refuses new work for a moment; retry shortly', {
      'Retry-After': String(this.retryAfterSeconds()),
    });
  }

  /** Feeds one period's measurements to the policy (the timer does; tests call it directly). */
  evaluate(sample: SaturationSample): void {
    const decision = this.policy.update(sample);
    if (!decision.changed) return;
    const values =
      `event loop delay p99 ${sample.eventLoopDelayP99Ms.toFixed(0)} ms, utilization ${sample.eventLoopUtilization.toFixed(2)}, ` +
      `palette queue ${(sample.paletteQueueFill * 100).toFixed(0)} % full, process CPU ${(sample.processCpuShare * 100).toFixed(0)} % of ${this.cores} core(s)`;
    if (decision.shedding) {
      this.since = Date.now();
      this.logger.warn(`Shedding load: new generations and uploads get 503 OVERLOADED (${decision.over.join(', ')} over the limit; ${values})`);
    } else {
      this.logger.log(`Load shedding stopped after ${Date.now() - this.since} ms (${values})`);
    }
  }

  /** This period's measurements; resets the period. */
  sample(): SaturationSample {
    const utilization = performance.eventLoopUtilization(this.lastUtilization);
    this.lastUtilization = performance.eventLoopUtilization();
    const p99 = this.delay.count > 0 ? this.delay.percentile(99) / 1e6 : 0;
    this.delay.reset();
    const stats = this.palette.stats();
    const fill = this.config.palette.maxQueue > 0 ? (stats.queued + stats.waiting) / this.config.palette.maxQueue : 0;
    const cpu = process.cpuUsage(this.lastCpu);
    const now = performance.now();
    const elapsedUs = (now - this.lastCpuAt) * 1000;
    this.lastCpu = process.cpuUsage();
    this.lastCpuAt = now;
    const cpuShare = elapsedUs > 0 ? (cpu.user + cpu.system) / (elapsedUs * this.cores) : 0;
    return {
      eventLoopDelayP99Ms: p99,
      eventLoopUtilization: utilization.utilization,
      paletteQueueFill: Math.min(1, fill),
      processCpuShare: Math.min(1, Math.max(0, cpuShare)),
    };
  }

  private retryAfterSeconds(): number {
    // Shedding stops after its calm periods at the soonest.
    return Math.max(1, Math.ceil((EXIT_SAMPLES * this.config.overload.sampleMs) / 1000));
  }
}

/** Consecutive saturated periods before shedding starts, and calm ones before it stops. */
const ENTER_SAMPLES = 2;
const EXIT_SAMPLES = 4;
/** The calm lines: 40 % of the delay, 0.2 below the utilization, half the fill, 60 % of the CPU line. */
const EXIT_DELAY_FACTOR = 0.4;
const EXIT_MARGIN = 0.2;
const EXIT_FILL_FACTOR = 0.5;
const EXIT_CPU_FACTOR = 0.6;

/** cgroup v2's CPU quota of this process, if any (undefined off Linux or without cgroup v2). */
function readCgroupCpuMax(): string | undefined {
  try {
    return readFileSync('/sys/fs/cgroup/cpu.max', 'utf8');
  } catch {
    return undefined;
  }
}
