/** What the instance measures of its own saturation, once per sampling period. */
export interface SaturationSample {
  /** p99 of the event loop's delay over the period (ms). */
  eventLoopDelayP99Ms: number;
  /** Share of the period the event loop was busy, 0..1. */
  eventLoopUtilization: number;
  /** How full the palette queue is, 0..1 (waiting tasks / PALETTE_MAX_QUEUE, plus any waiting for room). */
  paletteQueueFill: number;
}

export interface SheddingThresholds {
  /** Start shedding when a signal reaches its `enter` value for `enterSamples` periods in a row. */
  enter: SaturationSample;
  /** Stop when every signal is at or below its `exit` value for `exitSamples` periods in a row. */
  exit: SaturationSample;
  enterSamples: number;
  exitSamples: number;
}

export interface SheddingDecision {
  shedding: boolean;
  /** True on the sample that switched shedding on or off. */
  changed: boolean;
  /** The signals over their `enter` value on this sample (why it sheds), empty when none. */
  over: (keyof SaturationSample)[];
}

const SIGNALS: (keyof SaturationSample)[] = ['eventLoopDelayP99Ms', 'eventLoopUtilization', 'paletteQueueFill'];

/**
 * Decides from measured saturation whether the instance refuses new work, with hysteresis: it
 * starts only after `enterSamples` consecutive saturated periods (one slow garbage collection does not
 * flap it), and stops only after `exitSamples` consecutive calm periods below the lower `exit`
 * values (a queue that just dipped under the line does not flap it back). Pure: no clock, no I/O.
 */
export class SheddingPolicy {
  private shedding = false;
  private saturatedRun = 0;
  private calmRun = 0;

  constructor(private readonly thresholds: SheddingThresholds) {
    for (const s of SIGNALS) {
      if (!(thresholds.exit[s] < thresholds.enter[s])) throw new RangeError(`exit threshold of ${s} must be below its enter threshold`);
    }
  }

  get isShedding(): boolean {
    return this.shedding;
  }

  update(sample: SaturationSample): SheddingDecision {
    const over = SIGNALS.filter((s) => sample[s] >= this.thresholds.enter[s]);
    const calm = SIGNALS.every((s) => sample[s] <= this.thresholds.exit[s]);
    this.saturatedRun = over.length > 0 ? this.saturatedRun + 1 : 0;
    this.calmRun = calm ? this.calmRun + 1 : 0;
    const before = this.shedding;
    if (!this.shedding && this.saturatedRun >= this.thresholds.enterSamples) this.shedding = true;
    else if (this.shedding && this.calmRun >= this.thresholds.exitSamples) this.shedding = false;
    return { shedding: this.shedding, changed: before !== this.shedding, over };
  }
}
