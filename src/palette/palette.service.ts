// Loads libvips into the main thread before any worker thread does: a shared library first opened
// by a worker can be unloaded when that worker exits, which crashes the process on glibc (see sharp's
// worker-thread notes). Its loaders are restricted here too, once, before any worker decodes.
import { restrictDecoders } from './decoders';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { getPriority } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { Inject, Injectable, Logger, OnModuleDestroy, Optional } from '@nestjs/common';
import Piscina from 'piscina';
import { AppConfig } from '../config/app-config';
import { AppMetrics, Outcome } from '../telemetry/app-metrics';
import { withSpan } from '../telemetry/tracing';
import { PaletteError } from './palette.errors';
import { MAX_PALETTE_SIZE, MIN_PALETTE_SIZE } from './palette.types';
import type { DecodeLimits, PaletteResult, PaletteTask, PaletteTaskResult, PaletteWorkerData, PaletteWorkerSettings } from './palette.types';

restrictDecoders();

/** Optional provider: another worker file (tests use one that crashes or stalls on demand). */
export const PALETTE_WORKER_FILE = Symbol('PALETTE_WORKER_FILE');

/** Nice values of this process's worker_threads (named `WorkerThread` by Node), from /proc; empty elsewhere. */
function workerThreadNices(): number[] {
  const out: number[] = [];
  let tids: string[];
  try {
    tids = readdirSync('/proc/self/task');
  } catch {
    return out;
  }
  for (const tid of tids) {
    try {
      const stat = readFileSync(`/proc/self/task/${tid}/stat`, 'utf8');
      if (!stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')')).startsWith('WorkerThread')) continue;
      out.push(Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[16]));
    } catch {
      // the thread ended meanwhile
    }
  }
  return out;
}

/** Longest wait at shutdown for accepted tasks to finish, then for running ones once the queue is dropped. */
const DRAIN_TIMEOUT_MS = 10_000;
const CLOSE_TIMEOUT_MS = 2_000;

/**
 * The compiled worker next to this file (dist/), else its TypeScript source, which Node's type
 * stripping runs directly (Jest runs this service from source and does not compile worker files).
 */
export function resolveWorkerFile(dir: string = __dirname): string {
  const compiled = join(dir, 'palette.worker.js');
  return existsSync(compiled) ? compiled : join(dir, 'palette.worker.ts');
}

/** An encoded image in a file (an upload streamed to disk): the worker reads it; the caller deletes it. */
export interface ImageFile {
  path: string;
  /** Its size, for the span. */
  bytes: number;
}

export interface PaletteExtractOptions {
  /**
   * Aborts the task, whether it waits for room, sits in the queue (it is dropped, never run) or runs
   * (its thread is ended and replaced); the AbortError of the signal rejects.
   */
  signal?: AbortSignal;
  /**
   * Wait for room in a full queue instead of failing with PALETTE_BUSY (first come, first served;
   * bounded by `signal`). For work already admitted upstream, such as a generated image whose Gemini
   * call has been paid for; request/response callers keep the fast refusal.
   */
  waitForRoom?: boolean;
  /**
   * Hand the caller's bytes to the worker instead of copying them: the caller's buffer is detached
   * (empty) once the call returns. Only a buffer that owns its whole ArrayBuffer is moved; a slice of
   * Node's shared pool is copied as usual.
   */
  transfer?: boolean;
}

export interface PaletteStats {
  workers: number;
  busy: number;
  queued: number;
  /** Callers (with `waitForRoom`) waiting for room in a full queue. */
  waiting: number;
  /** busy / workers, right now. */
  utilization: number;
  /** Tasks finished by the pool since start (failed ones included). */
  completed: number;
}

/**
 * Palette extraction in a pool of worker threads (Piscina): decoding and quantizing never run on
 * the event loop. Bounded queue: past `PALETTE_MAX_QUEUE` waiting tasks, `extract` fails fast with
 * PALETTE_BUSY. A worker that dies fails only its own task; Piscina starts a replacement.
 */
@Injectable()
export class PaletteService implements OnModuleDestroy {
  private readonly logger = new Logger(PaletteService.name);
  private readonly pool: Piscina<PaletteTask, PaletteTaskResult>;
  private readonly maxQueue: number;
  private readonly pending = new Set<Promise<unknown>>();
  private closing = false;
  private inFlight = 0;
  /** Wake-ups of callers waiting for queue room, oldest first. */
  private readonly roomWaiters: Array<() => void> = [];
  /** Exponentially weighted mean task time (ms), for Retry-After hints. */
  private meanTaskMs = 25;
  private readonly inlineTask: ((task: PaletteTask) => Promise<PaletteTaskResult>) | undefined;
  private readonly taskTimeoutMs: number;
  private readonly limits: DecodeLimits;
  /** The nice value the worker threads should have, until checked once (checkWorkerNice). */
  private niceToCheck: number | undefined;

  constructor(
    config: AppConfig,
    private readonly metrics: AppMetrics,
    @Optional() @Inject(PALETTE_WORKER_FILE) workerFile?: string,
  ) {
    const { workers, workerNice, niceThreads, libvipsThreads, maxQueue, mode, taskTimeoutMs, maxDecodedBytes } = config.palette;
    this.maxQueue = maxQueue;
    this.taskTimeoutMs = taskTimeoutMs;
    // libvips stops its own work at the same limit (whole seconds): what a timed-out task's ended
    // thread still had running on libuv's pool does not go on burning a core.
    this.limits = { maxDecodedBytes, timeoutSeconds: Math.ceil(taskTimeoutMs / 1000) };
    if (mode === 'inline') {
      // PALETTE_MODE=inline exists for the load test's before/after only: the worker's own function,
      // awaited on the main thread (sharp still decodes on libuv threads; quantizing blocks the loop).
      // Loaded here, only in this mode: a static import would put node-vibrant on the main thread of
      // every instance, and an `import()` compiles (nodenext) to a native import whose `default` is
      // the worker's module.exports in dist/ but its default export under Jest.
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      this.inlineTask = (require('./palette.worker') as typeof import('./palette.worker')).default;
      this.logger.warn('PALETTE_MODE=inline: palette work runs on the main thread (load-test comparison only)');
    }
    this.pool = new Piscina<PaletteTask, PaletteTaskResult>({
      filename: workerFile ?? resolveWorkerFile(),
      minThreads: workers,
      maxThreads: workers,
      maxQueue,
      closeTimeout: CLOSE_TIMEOUT_MS,
      // Each worker thread lowers its own priority as it starts, so the event loop wins a contended
      // core (docs/capacity/palette-liveness.md). Needs @napi-rs/nice, without which Piscina skips it
      // silently: workerSettings() reads the result back from the threads.
      // On Linux nice() changes the calling thread only; elsewhere (macOS, BSD) the whole process,
      // event loop included: there the pool runs at the process's priority.
      niceIncrement: process.platform === 'linux' ? workerNice : 0,
      workerData: {
        libvipsThreads,
        ...(niceThreads === 'all' && workerNice > 0 ? { helperNice: Math.min(19, getPriority() + workerNice) } : {}),
      } satisfies PaletteWorkerData,
    });
    // Errors outside any task (a worker failing to start, a close timeout) surface here.
    this.pool.on('error', (error: Error) => this.logger.error(`Palette pool error: ${error.message}`, error.stack));
    this.niceToCheck = workerNice > 0 && mode === 'pool' ? Math.min(19, getPriority() + workerNice) : undefined;
    metrics.gauge('palette.pool.workers', 'Worker threads in the palette pool', () => this.pool.threads.length, '{thread}');
    metrics.gauge('palette.pool.queue.size', 'Palette tasks waiting for a worker', () => this.pool.queueSize, '{task}');
    metrics.gauge('palette.pool.waiting', 'Palette tasks waiting for room in a full queue', () => this.roomWaiters.length, '{task}');
    metrics.gauge('palette.pool.utilization', 'Share of palette workers busy with a task', () => this.stats().utilization, '1');
  }

  /**
   * The palette of an encoded image (PNG, JPEG, WebP, AVIF, GIF, TIFF), given as bytes or as a file:
   * `size` colours, most frequent first, shares of the opaque pixels. The caller's bytes are copied,
   * never detached, unless `transfer` is set; a file is read by the worker, never by this thread.
   * Each task has PALETTE_TASK_TIMEOUT_MS from entering the pool to its answer (PALETTE_TIMEOUT).
   * Rejects with PaletteError, or with the AbortError of `signal`.
   */
  extract(image: Buffer | Uint8Array | ImageFile, size: number, opts: PaletteExtractOptions = {}): Promise<PaletteResult> {
    if (!Number.isInteger(size) || size < MIN_PALETTE_SIZE || size > MAX_PALETTE_SIZE) {
      return Promise.reject(new RangeError(`palette size must be an integer ${MIN_PALETTE_SIZE}..${MAX_PALETTE_SIZE}, got ${size}`));
    }
    const bytes = image instanceof Uint8Array ? image.byteLength : image.bytes;
    const task = withSpan('palette.extract', { 'palette.size': size, 'image.bytes': bytes }, async (span) => {
      if (this.closing) throw this.shuttingDown();
      if (this.pool.queueSize >= this.maxQueue) {
        if (!opts.waitForRoom) throw this.busy();
        const waitStarted = performance.now();
        await this.waitForRoom(opts.signal);
        span.setAttribute('palette.wait_ms', Math.round(performance.now() - waitStarted));
      }
      const started = performance.now();
      let outcome: Outcome = 'error';
      this.inFlight++;
      const deadline = new TaskDeadline(this.taskTimeoutMs, opts.signal);
      try {
        const source = image instanceof Uint8Array ? (opts.transfer && ownsWholeBuffer(image) ? image.buffer : transferableCopy(image)) : image.path;
        const payload: PaletteTask = { image: source, size, limits: this.limits };
        const answer = this.inlineTask
          ? await this.inlineTask(payload)
          : await this.pool.run(payload, { transferList: typeof source === 'string' ? [] : [source], signal: deadline.signal });
        if (!answer.ok) {
          if (answer.detail) this.logger.debug(`Palette task refused the image (${answer.code}): ${answer.detail}`);
          throw new PaletteError(answer.code, answer.message);
        }
        outcome = 'ok';
        this.checkWorkerNice();
        const { width, height, format } = answer.palette;
        span.setAttributes({ 'image.width': width, 'image.height': height, 'image.format': format });
        return answer.palette;
      } catch (error) {
        if (deadline.expired) throw this.timedOut();
        throw this.toPaletteError(error, opts.signal);
      } finally {
        deadline.clear();
        this.inFlight--;
        const ms = performance.now() - started;
        this.meanTaskMs += 0.1 * (ms - this.meanTaskMs);
        this.metrics.recordPaletteTask(outcome, ms / 1000);
        // A finished task lets the next queued one start, which frees one place in the queue.
        this.roomWaiters.shift()?.();
      }
    });
    this.pending.add(task);
    void task.finally(() => this.pending.delete(task)).catch(() => undefined);
    return task;
  }

  /**
   * The settings a worker thread of the pool runs with, as it reads them back itself (one thread,
   * whichever takes the task): its nice value and libvips' thread count.
   */
  workerSettings(): Promise<PaletteWorkerSettings> {
    // The pool is typed for palette tasks; the `settings` export takes no argument.
    const run = this.pool.run.bind(this.pool) as unknown as (task: null, options: { name: string }) => Promise<unknown>;
    return run(null, { name: 'settings' }) as Promise<PaletteWorkerSettings>;
  }

  /**
   * Piscina skips the nice silently when @napi-rs/nice cannot load: once a task has run (so a worker
   * thread has started and set its nice), read the worker threads' nice values from /proc (Linux;
   * elsewhere nothing is checked) and warn when none has the expected one.
   */
  private checkWorkerNice(): void {
    const expected = this.niceToCheck;
    if (expected === undefined) return;
    this.niceToCheck = undefined;
    const nices = workerThreadNices();
    if (nices.length > 0 && !nices.some((n) => n >= expected)) {
      this.logger.warn(
        `PALETTE_WORKER_NICE: palette worker threads run at nice ${[...new Set(nices)].join(', ')}, not ${expected} ` +
          '(is the optional package @napi-rs/nice installed for this platform?); the event loop gets no priority over them',
      );
    }
  }

  stats(): PaletteStats {
    const workers = this.pool.threads.length;
    const queued = this.pool.queueSize;
    const busy = Math.min(workers, Math.max(0, this.inFlight - queued));
    return { workers, busy, queued, waiting: this.roomWaiters.length, utilization: workers > 0 ? busy / workers : 0, completed: this.pool.completed };
  }

  /** Readiness: false while shutting down or while the queue is full (new work would be refused). */
  isAccepting(): boolean {
    return !this.closing && this.pool.queueSize < this.maxQueue;
  }

  /** Seconds after which a refused request may find room: the current queue at the observed pace. */
  retryAfterSeconds(): number {
    const workers = Math.max(1, this.pool.threads.length);
    return Math.max(1, Math.ceil(((this.pool.queueSize + workers) * this.meanTaskMs) / workers / 1000));
  }

  /** Refuses new work, lets accepted tasks finish (bounded), then closes the pool and its threads. */
  async onModuleDestroy(): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    // Callers waiting for room get PALETTE_BUSY (shutting down) at once; accepted tasks finish.
    for (const wake of this.roomWaiters.splice(0)) wake();
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<void>((resolve) => (timer = setTimeout(resolve, DRAIN_TIMEOUT_MS)));
    await Promise.race([Promise.allSettled([...this.pending]), timedOut]);
    clearTimeout(timer);
    if (this.pending.size > 0) this.logger.warn(`Giving up on ${this.pending.size} palette task(s) still pending at shutdown`);
    // Drops what is still queued, waits up to closeTimeout for running tasks, then destroys the threads.
    await this.pool.close({ force: true });
  }

  /**
   * Resolves once the queue has room, in arrival order; re-checks on every wake-up because a caller
   * without `waitForRoom` may take the place first (then this one waits again, at the front).
   */
  private async waitForRoom(signal: AbortSignal | undefined): Promise<void> {
    let front = false;
    while (this.pool.queueSize >= this.maxQueue) {
      if (signal?.aborted) throw abortError(signal);
      await new Promise<void>((resolve, reject) => {
        const onAbort = () => {
          const i = this.roomWaiters.indexOf(wake);
          if (i >= 0) this.roomWaiters.splice(i, 1);
          reject(abortError(signal as AbortSignal));
        };
        const wake = () => {
          signal?.removeEventListener('abort', onAbort);
          resolve();
        };
        if (front) this.roomWaiters.unshift(wake);
        else this.roomWaiters.push(wake);
        signal?.addEventListener('abort', onAbort, { once: true });
      });
      if (this.closing) throw this.shuttingDown();
      front = true;
    }
  }

  private shuttingDown(): PaletteError {
    return new PaletteError('PALETTE_BUSY', 'The palette pool is shutting down');
  }

  private timedOut(): PaletteError {
    return new PaletteError('PALETTE_TIMEOUT', `The palette took longer than ${this.taskTimeoutMs} ms; retry later`);
  }

  private busy(): PaletteError {
    return new PaletteError('PALETTE_BUSY', `Too many palette tasks are waiting (${this.maxQueue}); retry later`);
  }

  private toPaletteError(error: unknown, signal: AbortSignal | undefined): unknown {
    if (error instanceof PaletteError) return error;
    // The caller's own cancellation stays an AbortError; anything else is the pool's failure.
    if (signal?.aborted && (error as Error)?.name === 'AbortError') return error;
    const message = (error as Error)?.message ?? String(error);
    if (message === 'Task queue is at limit') return this.busy();
    return new PaletteError('PALETTE_ERROR', `Palette worker failed: ${message}`);
  }
}

/**
 * One task's abort signal: the caller's, or the task's own time limit, whichever comes first. A
 * plain timer and listener (not AbortSignal.any/timeout), removed as soon as the task settles, so
 * a long-lived caller signal (a generation's) collects nothing per task.
 */
class TaskDeadline {
  private readonly controller = new AbortController();
  private readonly timer: NodeJS.Timeout;
  private readonly onCallerAbort: (() => void) | undefined;
  expired = false;

  constructor(
    timeoutMs: number,
    private readonly caller: AbortSignal | undefined,
  ) {
    this.timer = setTimeout(() => {
      if (this.controller.signal.aborted) return;
      this.expired = true;
      this.controller.abort(new DOMException('Palette task time limit', 'AbortError'));
    }, timeoutMs);
    if (caller?.aborted) this.controller.abort(caller.reason);
    else if (caller) {
      this.onCallerAbort = () => this.controller.abort(caller.reason);
      caller.addEventListener('abort', this.onCallerAbort, { once: true });
    }
  }

  get signal(): AbortSignal {
    return this.controller.signal;
  }

  clear(): void {
    clearTimeout(this.timer);
    if (this.onCallerAbort) this.caller?.removeEventListener('abort', this.onCallerAbort);
  }
}

/** The caller's cancellation as an AbortError, as Piscina reports an aborted queued task. */
function abortError(signal: AbortSignal): Error {
  const reason: unknown = signal.reason;
  return reason instanceof Error && reason.name === 'AbortError' ? reason : new DOMException(`Aborted: ${String(reason)}`, 'AbortError');
}

/** True when the view covers its whole, unshared ArrayBuffer, so transferring it moves nothing else. */
function ownsWholeBuffer(image: Uint8Array): image is Uint8Array<ArrayBuffer> {
  return image.buffer instanceof ArrayBuffer && image.byteOffset === 0 && image.byteLength === image.buffer.byteLength;
}

/**
 * A fresh ArrayBuffer holding the image, to transfer to the worker. Transferring the caller's own
 * buffer would detach it under the caller (the pipeline still needs the bytes to store them), and a
 * small Buffer is usually a slice of Node's shared pool, which must never be transferred. Posting
 * without a transfer would structured-clone the bytes, i.e. the same copy (≈ 0.5 ms for 2.7 MB).
 */
function transferableCopy(image: Uint8Array): ArrayBuffer {
  const copy = new ArrayBuffer(image.byteLength);
  new Uint8Array(copy).set(image);
  return copy;
}
