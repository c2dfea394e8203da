import type { Generation } from '../common/generation.model';

/**
 * One image of a generation: the unit a worker runs (Gemini call → upload → palette). A generation
 * with `count` images is `count` jobs, so its images spread over workers and one failing does not
 * cancel its siblings. Everything else a worker needs is read from the database: the record is the
 * truth, a job only names it.
 */
export interface ImageJob {
  generationId: string;
  index: number;
  /** The record's owner, for every read the worker makes. */
  owner: string | null;
  /** The principal's client: its fair share of Gemini's slots. */
  client: string;
  /** W3C trace context of the request that created the job, so one trace runs through the worker. */
  trace?: Record<string, string>;
}

/** Why a running job was aborted. */
export type AbortReason =
  /** The user canceled the generation. */
  | 'CANCELED'
  /** The process is stopping and nothing else will run the job (embedded mode). */
  | 'INTERRUPTED'
  /** The process is stopping; the job goes back to the queue for another worker. */
  | 'HANDED_BACK';

export interface JobContext {
  /** Aborts with an AbortReason. */
  signal: AbortSignal;
  /** How many times this job was taken over from a worker that died holding it. */
  takeovers: number;
  /**
   * False when the job ran before (taken over, handed back, or retried after a failure): then its
   * image may already be recorded. True on its first run, when it cannot be.
   */
  firstRun: boolean;
  /** The runner calls this once the job stops waiting (it holds its Gemini slot). */
  started(): void;
}

export type ImageJobHandler = (job: ImageJob, context: JobContext) => Promise<void>;

/** What a failed job's last word is, when the queue itself gives up on it (too many takeovers). */
export type LostJobHandler = (job: ImageJob, reason: string) => Promise<void>;

/**
 * The job queue port. Two adapters: in-process (jobs run in this process as they arrive; the
 * embedded default) and BullMQ on Redis (any instance's workers run any job; a killed worker's job
 * is taken over after its lock expires). The pipeline never asks which one it has.
 */
export abstract class JobQueue {
  /** `in-process` or `bullmq`. */
  abstract readonly kind: 'in-process' | 'bullmq';
  /** Adds the jobs; rejects with QueueUnavailableError when they cannot be queued (Redis down). */
  abstract enqueue(jobs: ImageJob[]): Promise<void>;
  /** Jobs accepted but not yet started (admission, metrics). */
  abstract waiting(): Promise<number>;
  /** Jobs running in this process. */
  abstract get active(): number;
  /**
   * Aborts the generation's jobs wherever they run (`CANCELED`) and drops those still waiting.
   * In-process, resolves once the local jobs have settled.
   */
  abstract cancel(generation: Pick<Generation, 'id' | 'count'>): Promise<void>;
  /** Starts running jobs in this process (workers only). `lost` records jobs the queue gave up on. */
  abstract startWorker(handler: ImageJobHandler, lost: LostJobHandler): Promise<void>;
  /**
   * Stops taking jobs; running ones may finish for `drainMs`, then are aborted: handed back to the
   * queue where another worker can take them (BullMQ), or `INTERRUPTED` (in-process).
   */
  abstract drain(drainMs: number): Promise<{ finished: number; aborted: number }>;
  /** Whether the job is still in the queue's hands (waiting or running), for LostJobReconciler. */
  abstract isQueued(generationId: string, index: number): Promise<boolean>;
  /** Readiness: rejects when the queue cannot take jobs. */
  abstract ping(): Promise<void>;
  abstract close(): Promise<void>;
}

/** The queue's backend cannot take jobs now (Redis unreachable): answered `503 QUEUE_UNAVAILABLE`. */
export class QueueUnavailableError extends Error {
  constructor(readonly detail: string) {
    super('The job queue is unavailable');
    this.name = 'QueueUnavailableError';
  }
}
