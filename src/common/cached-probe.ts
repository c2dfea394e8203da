/**
 * A readiness probe that does real work (writes a file, calls a store) run at most once per `ttlMs`,
 * so a storm of `/health/ready` requests costs one probe: concurrent callers share the run in
 * flight, and its outcome, success or error, answers every check until it is `ttlMs` old.
 *
 * A run that has not settled after `timeoutMs` fails the check and its signal is aborted. Not every
 * operation honours the signal (a local `write()` on a hung disk does not), so while a timed-out run
 * is still pending no new one starts: checks fail at once instead of piling up stuck probes.
 */
export class CachedProbe {
  private last: { at: number; error: unknown } | null = null;
  private shared: Promise<void> | null = null;
  /** The probe's own promise until it settles, even after its check timed out. */
  private pending: Promise<unknown> | null = null;

  constructor(
    private readonly probe: (signal: AbortSignal) => Promise<void>,
    private readonly options: {
      ttlMs: number;
      /** The error a run that took too long fails with. */
      timeoutError: (timeoutMs: number) => Error;
      /** The error while a timed-out run is still pending. */
      stuckError: () => Error;
      now?: () => number;
    },
  ) {}

  check(timeoutMs: number): Promise<void> {
    const cached = this.last;
    if (cached && this.now() - cached.at < this.options.ttlMs) {
      return cached.error === undefined ? Promise.resolve() : Promise.reject(cached.error);
    }
    this.shared ??= this.runOnce(timeoutMs).finally(() => (this.shared = null));
    return this.shared;
  }

  private async runOnce(timeoutMs: number): Promise<void> {
    let error: unknown;
    try {
      if (this.pending) throw this.options.stuckError();
      await this.runWithTimeout(timeoutMs);
    } catch (e) {
      error = e ?? new Error('probe failed');
    }
    this.last = { at: this.now(), error };
    if (error !== undefined) throw error;
  }

  private runWithTimeout(timeoutMs: number): Promise<void> {
    const controller = new AbortController();
    const run = Promise.resolve().then(() => this.probe(controller.signal));
    const pending = run.then(
      () => undefined,
      () => undefined,
    );
    this.pending = pending;
    void pending.then(() => {
      if (this.pending === pending) this.pending = null;
    });
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        const error = this.options.timeoutError(timeoutMs);
        controller.abort(error);
        reject(error);
      }, timeoutMs);
    });
    return Promise.race([run, timedOut]).finally(() => clearTimeout(timer));
  }

  private now(): number {
    return (this.options.now ?? performance.now.bind(performance))();
  }
}
