import { Logger } from '@nestjs/common';
import type { Generation } from '../common/generation.model';
import { AbortReason, ImageJob, ImageJobHandler, JobQueue, QueueUnavailableError } from './job-queue';

interface Running {
  index: number;
  controller: AbortController;
  started: boolean;
  done: Promise<void>;
}

/**
 * Jobs run in this process the moment they are queued: the embedded default (one instance, nothing
 * to share). What bounds them is the Gemini quota they wait in; `waiting()` counts those that do
 * not hold a Gemini slot yet, exactly and synchronously, so a burst of requests cannot overshoot
 * PIPELINE_MAX_QUEUE.
 */
export class InProcessJobQueue extends JobQueue {
  readonly kind = 'in-process' as const;
  private readonly logger = new Logger('JobQueue');
  private readonly running = new Map<string, Set<Running>>();
  private handler: ImageJobHandler | undefined;
  private accepting = true;
  private notStarted = 0;
  private count = 0;

  async enqueue(jobs: ImageJob[]): Promise<void> {
    const handler = this.handler;
    if (!handler || !this.accepting) throw new QueueUnavailableError(handler ? 'the process is stopping' : 'no worker runs in this process');
    for (const job of jobs) this.run(job, handler);
  }

  async waiting(): Promise<number> {
    return this.notStarted;
  }

  /** The synchronous count behind `waiting()`. */
  get waitingNow(): number {
    return this.notStarted;
  }

  get active(): number {
    return this.count;
  }

  async cancel(generation: Pick<Generation, 'id'>): Promise<void> {
    const jobs = [...(this.running.get(generation.id) ?? [])];
    for (const job of jobs) job.controller.abort('CANCELED' satisfies AbortReason);
    await Promise.allSettled(jobs.map((j) => j.done));
  }

  async startWorker(handler: ImageJobHandler): Promise<void> {
    this.handler = handler;
  }

  async drain(drainMs: number): Promise<{ finished: number; aborted: number }> {
    this.accepting = false;
    const all = () => [...this.running.values()].flatMap((set) => [...set]);
    const pending = all();
    if (pending.length === 0) return { finished: 0, aborted: 0 };
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<void>((resolve) => (timer = setTimeout(resolve, drainMs)));
    await Promise.race([Promise.allSettled(pending.map((j) => j.done)), timedOut]);
    clearTimeout(timer);
    const left = all();
    // Nothing else will ever run them: they end INTERRUPTED.
    for (const job of left) job.controller.abort('INTERRUPTED' satisfies AbortReason);
    await Promise.allSettled(left.map((j) => j.done));
    return { finished: pending.length - left.length, aborted: left.length };
  }

  async isQueued(generationId: string, index: number): Promise<boolean> {
    return [...(this.running.get(generationId) ?? [])].some((r) => r.index === index);
  }

  async ping(): Promise<void> {}

  async close(): Promise<void> {}

  private run(job: ImageJob, handler: ImageJobHandler): void {
    const entry: Running = { index: job.index, controller: new AbortController(), started: false, done: Promise.resolve() };
    let set = this.running.get(job.generationId);
    if (!set) this.running.set(job.generationId, (set = new Set()));
    set.add(entry);
    this.notStarted++;
    this.count++;
    const started = () => {
      if (entry.started) return;
      entry.started = true;
      this.notStarted--;
    };
    entry.done = handler(job, { signal: entry.controller.signal, takeovers: 0, firstRun: true, started })
      .catch((error: unknown) => this.logger.error(`Job ${job.generationId}/${job.index} crashed: ${String(error)}`, (error as Error)?.stack))
      .finally(() => {
        started();
        this.count--;
        set.delete(entry);
        if (set.size === 0) this.running.delete(job.generationId);
      });
  }
}
