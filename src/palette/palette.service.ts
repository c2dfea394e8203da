// Loads libvips into the main thread before any worker thread does: a shared library first opened
// by a worker can be unloaded when that worker exits, which crashes the process on glibc (see sharp's
// worker-thread notes). Nothing else in the main thread needs sharp.
import 'sharp';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { Inject, Injectable, Logger, OnModuleDestroy, Optional } from '@nestjs/common';
import Piscina from 'piscina';
import { AppConfig } from '../config/app-config';
import { AppMetrics, Outcome } from '../telemetry/app-metrics';
import { withSpan } from '../telemetry/tracing';
import { PaletteError } from './palette.errors';
import { MAX_PALETTE_SIZE, MIN_PALETTE_SIZE } from './palette.types';
import type { PaletteResult, PaletteTask, PaletteTaskResult } from './palette.types';

/** Optional provider: another worker file (tests use one that crashes or stalls on demand). */
export const PALETTE_WORKER_FILE = Symbol('PALETTE_WORKER_FILE');

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

export interface PaletteStats {
  workers: number;
  busy: number;
  queued: number;
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
  /** Exponentially weighted mean task time (ms), for Retry-After hints. */
  private meanTaskMs = 25;
  private readonly inlineTask: ((task: PaletteTask) => Promise<PaletteTaskResult>) | undefined;

  constructor(
    config: AppConfig,
    private readonly metrics: AppMetrics,
    @Optional() @Inject(PALETTE_WORKER_FILE) workerFile?: string,
  ) {
    const { workers, maxQueue, mode } = config.palette;
    this.maxQueue = maxQueue;
    if (mode === 'inline') {
      // PALETTE_MODE=inline exists for the load test's before/after only: the worker's own function,
      // awaited on the main thread (sharp still decodes on libuv threads; quantizing blocks the loop).
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
    });
    // Errors outside any task (a worker failing to start, a close timeout) surface here.
    this.pool.on('error', (error: Error) => this.logger.error(`Palette pool error: ${error.message}`, error.stack));
    metrics.gauge('palette.pool.workers', 'Worker threads in the palette pool', () => this.pool.threads.length, '{thread}');
    metrics.gauge('palette.pool.queue.size', 'Palette tasks waiting for a worker', () => this.pool.queueSize, '{task}');
    metrics.gauge('palette.pool.utilization', 'Share of palette workers busy with a task', () => this.stats().utilization, '1');
  }

  /**
   * The palette of an encoded image (PNG, JPEG, WebP, AVIF, GIF, TIFF): `size` colours, most
   * frequent first, shares of the opaque pixels. The caller's bytes are copied, never detached.
   * Rejects with PaletteError, or with the AbortError of `signal`.
   */
  extract(image: Buffer | Uint8Array, size: number, opts: { signal?: AbortSignal } = {}): Promise<PaletteResult> {
    if (!Number.isInteger(size) || size < MIN_PALETTE_SIZE || size > MAX_PALETTE_SIZE) {
      return Promise.reject(new RangeError(`palette size must be an integer ${MIN_PALETTE_SIZE}..${MAX_PALETTE_SIZE}, got ${size}`));
    }
    const task = withSpan('palette.extract', { 'palette.size': size, 'image.bytes': image.byteLength }, async (span) => {
      if (this.closing) throw new PaletteError('PALETTE_BUSY', 'The palette pool is shutting down');
      if (this.pool.queueSize >= this.maxQueue) throw this.busy();
      const started = performance.now();
      let outcome: Outcome = 'error';
      this.inFlight++;
      try {
        const buffer = transferableCopy(image);
        const answer = this.inlineTask
          ? await this.inlineTask({ image: buffer, size })
          : await this.pool.run({ image: buffer, size }, { transferList: [buffer], signal: opts.signal ?? null });
        if (!answer.ok) throw new PaletteError(answer.code, answer.message);
        outcome = 'ok';
        const { width, height, format } = answer.palette;
        span.setAttributes({ 'image.width': width, 'image.height': height, 'image.format': format });
        return answer.palette;
      } catch (error) {
        throw this.toPaletteError(error, opts.signal);
      } finally {
        this.inFlight--;
        const ms = performance.now() - started;
        this.meanTaskMs += 0.1 * (ms - this.meanTaskMs);
        this.metrics.recordPaletteTask(outcome, ms / 1000);
      }
    });
    this.pending.add(task);
    void task.finally(() => this.pending.delete(task)).catch(() => undefined);
    return task;
  }

  stats(): PaletteStats {
    const workers = this.pool.threads.length;
    const queued = this.pool.queueSize;
    const busy = Math.min(workers, Math.max(0, this.inFlight - queued));
    return { workers, busy, queued, utilization: workers > 0 ? busy / workers : 0, completed: this.pool.completed };
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
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<void>((resolve) => (timer = setTimeout(resolve, DRAIN_TIMEOUT_MS)));
    await Promise.race([Promise.allSettled([...this.pending]), timedOut]);
    clearTimeout(timer);
    if (this.pending.size > 0) this.logger.warn(`Giving up on ${this.pending.size} palette task(s) still pending at shutdown`);
    // Drops what is still queued, waits up to closeTimeout for running tasks, then destroys the threads.
    await this.pool.close({ force: true });
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
