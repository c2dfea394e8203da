import { Logger } from '@nestjs/common';
import { context, propagation, ROOT_CONTEXT } from '@opentelemetry/api';
import { Job, Queue, WaitingError, Worker } from 'bullmq';
import type { Generation } from '../common/generation.model';
import type { RedisConnections } from '../redis/redis.connections';
import type { AppMetrics } from '../telemetry/app-metrics';
import { AbortReason, ImageJob, ImageJobHandler, JobQueue, LostJobHandler, QueueUnavailableError } from './job-queue';

const QUEUE_NAME = 'images';
/** A job whose handler threw (the database was unreachable, say) runs again this many times in all. */
const ATTEMPTS = 5;
/** Between those runs: 2 s, 4 s, 8 s, 16 s. */
const RETRY_DELAY_MS = 2_000;
/** Enqueueing gives up after this when Redis does not answer: the request gets a 503. */
const ENQUEUE_TIMEOUT_MS = 3_000;
/** How stale the waiting count used for admission may be. */
const WAITING_CACHE_MS = 250;

export interface BullMqSettings {
  concurrency: number;
  lockMs: number;
  maxTakeovers: number;
}

interface Running {
  job: ImageJob;
  controller: AbortController;
  done: Promise<unknown>;
}

/** For the log: the error and, behind the service's own typed errors, the driver's. */
function describeError(error: Error): string {
  const code = (error as { code?: unknown }).code;
  const head = typeof code === 'string' ? `${code}: ${error.message}` : error.message;
  return error.cause instanceof Error ? `${head} (${error.cause.message})` : head;
}

/** BullMQ allows no `:` in custom ids; generation ids have none. */
export function jobId(generationId: string, index: number): string {
  return `${generationId}-${index}`;
}

/**
 * The job queue on Redis with BullMQ: any instance enqueues, any worker runs any job, and a job's
 * ownership is BullMQ's lock. A worker renews its lock while it runs; if it dies (SIGKILL, a lost
 * host), another worker takes the job over once the lock expires (QUEUE_LOCK_MS), up to
 * QUEUE_MAX_TAKEOVERS times, after which the job fails and `lost` records it INTERRUPTED. On SIGTERM
 * a worker takes no new job, lets running ones finish for the drain time, then hands the rest back
 * (moved to waiting, not failed) for another worker. Cancel is a message on a Redis channel that the
 * worker holding the job acts on within milliseconds.
 */
export class BullMqJobQueue extends JobQueue {
  readonly kind = 'bullmq' as const;
  private readonly logger = new Logger('JobQueue');
  private readonly queue: Queue;
  private readonly cancelChannel: string;
  private readonly running = new Map<string, Set<Running>>();
  private worker: Worker | undefined;
  /** Set by drain(): a job fetched after it (by a fetch already under way) goes straight back. */
  private draining = false;
  private count = 0;
  private waitingCache: { at: number; value: number } | undefined;
  /** Jobs this instance enqueued since the cached count was read. */
  private addedSinceCount = 0;
  private readonly onMessage = (channel: string, message: string) => {
    if (channel === this.cancelChannel) this.abortLocal(message, 'CANCELED');
  };

  constructor(
    private readonly redis: RedisConnections,
    private readonly settings: BullMqSettings,
    private readonly metrics: AppMetrics,
  ) {
    super();
    // Enqueueing fails fast while Redis is away (a 503 for the client) instead of queueing commands.
    this.queue = new Queue(QUEUE_NAME, {
      connection: { ...redis.bullmqConnection(), maxRetriesPerRequest: 1 },
      prefix: redis.key('bull'),
    });
    this.queue.on('error', (error: Error) => this.logger.warn(`Queue connection: ${error.message}`));
    this.cancelChannel = redis.key('jobs', 'cancel');
    redis.subscriber.on('message', this.onMessage);
    void redis.subscriber.subscribe(this.cancelChannel).catch((e: unknown) => this.logger.warn(`Could not subscribe to cancels: ${String(e)}`));
  }

  get active(): number {
    return this.count;
  }

  async enqueue(jobs: ImageJob[]): Promise<void> {
    const carrier: Record<string, string> = {};
    propagation.inject(context.active(), carrier);
    const bulk = jobs.map((data) => ({
      name: 'image',
      data: { ...data, trace: carrier },
      opts: {
        jobId: jobId(data.generationId, data.index),
        attempts: ATTEMPTS,
        backoff: { type: 'exponential', delay: RETRY_DELAY_MS },
        removeOnComplete: { age: 3_600, count: 10_000 },
        removeOnFail: { age: 7 * 86_400 },
      },
    }));
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        this.queue.addBulk(bulk),
        new Promise((_, reject) => (timer = setTimeout(() => reject(new Error(`no answer within ${ENQUEUE_TIMEOUT_MS} ms`)), ENQUEUE_TIMEOUT_MS))),
      ]);
      this.addedSinceCount += jobs.length;
    } catch (error) {
      throw new QueueUnavailableError(error instanceof Error ? error.message : String(error));
    } finally {
      clearTimeout(timer);
    }
  }

  async waiting(): Promise<number> {
    const now = Date.now();
    if (!this.waitingCache || now - this.waitingCache.at > WAITING_CACHE_MS) {
      const value = await this.queue.getJobCountByTypes('waiting', 'prioritized', 'delayed');
      this.waitingCache = { at: now, value };
      this.addedSinceCount = 0;
    }
    return this.waitingCache.value + this.addedSinceCount;
  }

  async cancel(generation: Pick<Generation, 'id' | 'count'>): Promise<void> {
    // The worker holding a job may be any instance: tell them all (this one included, through Redis
    // or directly if Redis is away).
    this.abortLocal(generation.id, 'CANCELED');
    await this.redis.command.publish(this.cancelChannel, generation.id).catch((e: unknown) => this.logger.warn(`Could not announce a cancel: ${String(e)}`));
    // Jobs not started yet are dropped; one a worker takes meanwhile sees the record final and stops.
    for (let index = 0; index < generation.count; index++) {
      const job = await this.queue.getJob(jobId(generation.id, index)).catch(() => undefined);
      if (job && ['waiting', 'delayed', 'prioritized', 'paused'].includes(await job.getState())) await job.remove().catch(() => undefined);
    }
  }

  async startWorker(handler: ImageJobHandler, lost: LostJobHandler): Promise<void> {
    const { concurrency, lockMs, maxTakeovers } = this.settings;
    // Three parameters: BullMQ passes the AbortSignal only to a processor that declares it.
    const processor = async (job: Job, token: string | undefined, signal?: AbortSignal) => this.process(job, token, signal, handler);
    this.worker = new Worker(QUEUE_NAME, processor, {
      connection: this.redis.bullmqConnection(),
      prefix: this.redis.key('bull'),
      concurrency,
      lockDuration: lockMs,
      stalledInterval: Math.max(500, Math.round(lockMs / 2)),
      maxStalledCount: maxTakeovers,
    });
    this.worker.on('error', (error: Error) => this.logger.warn(`Worker: ${error.message}`));
    this.worker.on('stalled', (id: string) => {
      this.metrics.recordJobTakeover();
      this.logger.warn(`Job ${id} was held by a worker that stopped renewing its lock; another worker takes it over`);
    });
    this.worker.on('failed', (job: Job | undefined, error: Error) => {
      if (!job) return;
      void job.getState().then(async (state) => {
        // A job that will run again (retries left) is not lost yet.
        if (state !== 'failed') {
          this.logger.warn(
            `Job ${job.id} attempt ${job.attemptsMade} of ${job.opts.attempts ?? 1} failed (${describeError(error)}); it runs again in ${job.delay} ms`,
          );
          return;
        }
        await lost(job.data as ImageJob, error.message);
      }).catch((e: unknown) => this.logger.error(`Could not record lost job ${job.id}: ${String(e)}`));
    });
    await this.worker.waitUntilReady().catch((e: unknown) => this.logger.warn(`Worker not connected yet: ${String(e)}`));
  }

  async drain(drainMs: number): Promise<{ finished: number; aborted: number }> {
    const worker = this.worker;
    if (!worker) return { finished: 0, aborted: 0 };
    this.draining = true;
    // No new jobs (close() stops fetching at once and waits for the running ones, which go on).
    const closed = worker.close().catch((e: unknown) => this.logger.warn(`Closing the worker: ${String(e)}`));
    const all = () => [...this.running.values()].flatMap((set) => [...set]);
    const pending = all();
    if (pending.length > 0) {
      this.logger.log(`Draining ${pending.length} job(s) for up to ${drainMs} ms`);
      let timer: NodeJS.Timeout | undefined;
      const timedOut = new Promise<void>((resolve) => (timer = setTimeout(resolve, drainMs)));
      await Promise.race([Promise.allSettled(pending.map((j) => j.done)), timedOut]);
      clearTimeout(timer);
    }
    const left = all();
    // Another worker finishes them: back to waiting, not failed.
    for (const r of left) r.controller.abort('HANDED_BACK' satisfies AbortReason);
    await Promise.allSettled(left.map((r) => r.done));
    await closed;
    return { finished: pending.length - left.length, aborted: left.length };
  }

  async ping(): Promise<void> {
    await this.redis.ping();
  }

  async close(): Promise<void> {
    this.redis.subscriber.off('message', this.onMessage);
    await this.redis.subscriber.unsubscribe(this.cancelChannel).catch(() => undefined);
    if (!this.draining) await this.worker?.close().catch((e: unknown) => this.logger.warn(`Closing the worker: ${String(e)}`));
    await this.queue.close().catch(() => undefined);
  }

  /** Whether the job is still in the queue's hands (waiting, delayed or active), for reconciliation. */
  async isQueued(generationId: string, index: number): Promise<boolean> {
    const job = await this.queue.getJob(jobId(generationId, index));
    if (!job) return false;
    return !['completed', 'failed', 'unknown'].includes(await job.getState());
  }

  private async process(job: Job, token: string | undefined, signal: AbortSignal | undefined, handler: ImageJobHandler): Promise<void> {
    if (this.draining) {
      await job.moveToWait(token);
      throw new WaitingError();
    }
    const controller = new AbortController();
    signal?.addEventListener('abort', () => controller.abort('CANCELED' satisfies AbortReason), { once: true });
    const data = job.data as ImageJob;
    const entry: Running = { job: data, controller, done: Promise.resolve() };
    let set = this.running.get(data.generationId);
    if (!set) this.running.set(data.generationId, (set = new Set()));
    set.add(entry);
    this.count++;
    const parent = propagation.extract(ROOT_CONTEXT, data.trace ?? {});
    const run = context.with(parent, () => handler(data, { signal: controller.signal, takeovers: job.stalledCounter, firstRun: job.attemptsStarted <= 1, started: () => undefined }));
    entry.done = run.catch(() => undefined);
    try {
      await run;
    } catch (error) {
      if (controller.signal.reason === 'HANDED_BACK') {
        await job.moveToWait(token);
        throw new WaitingError();
      }
      throw error;
    } finally {
      this.count--;
      set.delete(entry);
      if (set.size === 0) this.running.delete(data.generationId);
    }
    if (controller.signal.reason === 'HANDED_BACK') {
      // The handler noticed the hand-back and stopped without throwing.
      await job.moveToWait(token);
      throw new WaitingError();
    }
  }

  private abortLocal(generationId: string, reason: AbortReason): void {
    for (const r of this.running.get(generationId) ?? []) r.controller.abort(reason);
  }
}
