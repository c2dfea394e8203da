/** What the instance measures of its own saturation, once per sampling period. */
export interface SaturationSample {
  /** p99 of the event loop's delay over the period (ms). */
  eventLoopDelayP99Ms: number;
  /** Share of the period the event loop was busy, 0..1. */
  eventLoopUtilization: number;
  /** How full the palette queue is, 0..1 (waiting tasks / PALETTE_MAX_QUEUE, plus any waiting for room). */
  paletteQueueFill: number;
  /**
   * CPU time this process used over the period, all its threads (event loop, palette workers,
   * libvips, GC), as a share of the CPU it may use (period × its cores), 0..1.
   */
  processCpuShare: number;
}

export type Signal = keyof SaturationSample;

export interface SheddingThresholds {
  /** Start shedding when a signal reaches its `enter` value for `enterSamples` periods in a row (see SheddingPolicy). */
  enter: SaturationSample;
  /** Stop when every signal is calm (see SheddingPolicy) for `exitSamples` periods in a row. */
  exit: SaturationSample;
  enterSamples: number;
  exitSamples: number;
}

export interface SheddingDecision {
  shedding: boolean;
  /** True on the sample that switched shedding on or off. */
  changed: boolean;
  /** The signals that make this sample saturated (why it sheds), empty when none. */
  over: Signal[];
  /**
   * Event-loop signals over their `enter` value while this process used less CPU than
   * `enter.processCpuShare`: the loop is slow because other processes hold the cores, which
   * refusing this instance's clients would not fix. Not counted as saturation.
   */
  notOwnLoad: Signal[];
}

const SIGNALS: Signal[] = ['eventLoopDelayP99Ms', 'eventLoopUtilization', 'paletteQueueFill', 'processCpuShare'];
const LOOP_SIGNALS: Signal[] = ['eventLoopDelayP99Ms', 'eventLoopUtilization'];

/**
 * Decides from measured saturation whether the instance refuses new work.
 *
 * A period is **saturated** when
 * - the palette queue's fill reaches its `enter` value (a backlog of this instance's own work), or
 * - the event loop's delay p99 or its utilization reaches its `enter` value **while** the process
 *   itself uses at least `enter.processCpuShare` of its CPU. A slow loop in a process that barely
 *   uses the CPU is a machine busy with other work (a neighbour, a test suite, a backup): the
 *   instance is not the cause, refusing its clients would not make it faster, so it does not shed.
 *
 * A period is **calm** when the palette queue is at or below its `exit` fill and either the process
 * uses at most `exit.processCpuShare` of its CPU or both loop signals are at or below their `exit`
 * values.
 *
 * Hysteresis: shedding starts only after `enterSamples` consecutive saturated periods (one slow
 * garbage collection does not flap it), and stops only after `exitSamples` consecutive calm periods
 * (a queue that just dipped under the line does not flap it back). Pure: no clock, no I/O.
 */
export class SheddingPolicy {
  private shedding = false;
  private saturatedRun = 0;
  private calmRun = 0;

  constructor(private readonly thresholds: SheddingThresholds) {
    for (const s of SIGNALS) {
      if (!(thresholds.exit[s] < thresholds.enter[s])) throw new RangeError(`exit threshold of ${s} must be below its enter threshold`);
    }
    if (!(thresholds.enterSamples >= 1 && thresholds.exitSamples >= 1)) throw new RangeError('enterSamples and exitSamples must be at least 1');
  }

  get isShedding(): boolean {
    return this.shedding;
  }

  update(sample: SaturationSample): SheddingDecision {
    const { enter, exit } = this.thresholds;
    const ownLoad = sample.processCpuShare >= enter.processCpuShare;
    const loopOver = LOOP_SIGNALS.filter((s) => sample[s] >= enter[s]);
    const over: Signal[] = [...(ownLoad ? loopOver : []), ...(sample.paletteQueueFill >= enter.paletteQueueFill ? (['paletteQueueFill'] as Signal[]) : [])];
    if (ownLoad && loopOver.length > 0) over.push('processCpuShare');
    const loopCalm = LOOP_SIGNALS.every((s) => sample[s] <= exit[s]);
    const calm = sample.paletteQueueFill <= exit.paletteQueueFill && (sample.processCpuShare <= exit.processCpuShare || loopCalm);
    this.saturatedRun = over.length > 0 ? this.saturatedRun + 1 : 0;
    this.calmRun = calm ? this.calmRun + 1 : 0;
    const before = this.shedding;
    if (!this.shedding && this.saturatedRun >= this.thresholds.enterSamples) this.shedding = true;
    else if (this.shedding && this.calmRun >= this.thresholds.exitSamples) this.shedding = false;
    return { shedding: this.shedding, changed: before !== this.shedding, over, notOwnLoad: ownLoad ? [] : loopOver };
  }
}

/**
 * The cores this process may use: the machine's (or its CPU affinity's), or fewer when a cgroup v2
 * quota limits it (`/sys/fs/cgroup/cpu.max`: "max 100000" = no limit, "150000 100000" = 1.5 cores).
 */
export function usableCores(machineCores: number, cgroupCpuMax: string | undefined): number {
  const match = /^(\d+)\s+(\d+)/.exec(cgroupCpuMax?.trim() ?? '');
  const quota = match ? Number(match[1]) / Number(match[2]) : Number.POSITIVE_INFINITY;
  return Math.max(0.1, Math.min(machineCores, quota > 0 ? quota : Number.POSITIVE_INFINITY));
}
