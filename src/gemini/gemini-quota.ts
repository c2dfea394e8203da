import { sleep } from '../common/sleep';
import type { AppConfig } from '../config/app-config';
import { Semaphore } from './semaphore';

/**
 * The Gemini key's quota, as the service spends it: how many calls may be in flight
 * (`GEMINI_MAX_CONCURRENCY`, with a fair share per client), how many may start per minute
 * (`GEMINI_RATE_LIMIT_PER_MINUTE`), and a pause for everyone after Gemini answers 429. Two adapters:
 * in-process (one instance: the quota is this process's) and Redis (N instances share one quota).
 */
export interface GeminiQuota {
  /**
   * Waits for a call slot for `client` (undefined: no per-client share) and resolves with its release
   * function. Rejects with the signal's reason when `signal` aborts first. A slot is held for one
   * Gemini call with its retries, never for what the pipeline does with the image afterwards.
   */
  acquire(client: string | undefined, signal?: AbortSignal): Promise<() => void>;
  /**
   * Waits until one more HTTP request may start: past any 429 pause and within the per-minute rate.
   * Resolves with how long it waited (ms).
   */
  beforeRequest(signal?: AbortSignal): Promise<number>;
  /** Gemini answered 429 and asked for `ms`: new requests everywhere wait that long. */
  pause(ms: number): Promise<void>;
  /** This process's calls holding a slot, and waiting for one. */
  readonly inFlight: number;
  readonly waiting: number;
  readonly capacity: number;
  close(): Promise<void>;
}

export const GEMINI_QUOTA = Symbol('GEMINI_QUOTA');

export interface QuotaLimits {
  maxConcurrency: number;
  perClient: number;
  /** Requests started per minute; 0 = no limit. */
  ratePerMinute: number;
}

/** The quota's limits as configured. */
export function quotaLimits(config: AppConfig): QuotaLimits {
  return {
    maxConcurrency: config.gemini.maxConcurrency,
    perClient: config.fairness.geminiConcurrencyPerClient,
    ratePerMinute: config.gemini.ratePerMinute,
  };
}

const MINUTE_MS = 60_000;

/**
 * Start times of the last minute's requests: `reserve()` either records a start now (0) or says how
 * long until the oldest one leaves the window.
 */
export class SlidingMinute {
  private readonly starts: number[] = [];
  constructor(private readonly limit: number) {}

  reserve(now: number): number {
    while (this.starts.length > 0 && this.starts[0] <= now - MINUTE_MS) this.starts.shift();
    if (this.starts.length < this.limit) {
      this.starts.push(now);
      return 0;
    }
    return this.starts[0] + MINUTE_MS - now;
  }
}

/** One process's quota: a fair-share semaphore, a sliding one-minute window and a pause deadline. */
export class InProcessGeminiQuota implements GeminiQuota {
  private readonly semaphore: Semaphore;
  private readonly window: SlidingMinute | undefined;
  private pausedUntil = 0;

  constructor(
    limits: QuotaLimits,
    private readonly now: () => number = Date.now,
  ) {
    this.semaphore = new Semaphore(limits.maxConcurrency, limits.perClient);
    this.window = limits.ratePerMinute > 0 ? new SlidingMinute(limits.ratePerMinute) : undefined;
  }

  acquire(client: string | undefined, signal?: AbortSignal): Promise<() => void> {
    return this.semaphore.acquire(signal, client);
  }

  async beforeRequest(signal?: AbortSignal): Promise<number> {
    let waited = 0;
    for (;;) {
      const now = this.now();
      const wait = now < this.pausedUntil ? this.pausedUntil - now : (this.window?.reserve(now) ?? 0);
      if (wait <= 0) return waited;
      await sleep(wait, signal);
      waited += wait;
    }
  }

  async pause(ms: number): Promise<void> {
    this.pausedUntil = Math.max(this.pausedUntil, this.now() + ms);
  }

  get inFlight(): number {
    return this.semaphore.inFlight;
  }

  get waiting(): number {
    return this.semaphore.waiting;
  }

  get capacity(): number {
    return this.semaphore.capacity;
  }

  async close(): Promise<void> {}
}
