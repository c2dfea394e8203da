import { Injectable, Logger, OnApplicationBootstrap, OnModuleDestroy } from '@nestjs/common';
import { GenerationsRecovery, type RecoveredGeneration } from '../database/generations.recovery';
import { StorageService } from '../storage/storage.service';

export interface SweepResult {
  /** Generations whose images were looked for. */
  generations: number;
  /** Objects deleted. */
  deleted: number;
  /** Generations whose prefix could not be listed or cleared. */
  failed: number;
  /** Generations not tried because the store kept failing (or the service stopped). */
  skipped: number;
}

/** Generations swept at once. */
const CONCURRENCY = 4;
/** Bound on listing and clearing one generation's prefix. */
const PER_GENERATION_TIMEOUT_MS = 10_000;
/** After this many failures in a row the store is taken to be down and the sweep stops. */
const MAX_CONSECUTIVE_FAILURES = 3;

const reason = (error: unknown) => (error instanceof Error ? error.message : String(error));

/**
 * Removes the stored images of generations that start-up recovery marked INTERRUPTED: a process
 * killed between an upload and its record update (SIGKILL, OOM, a final write that never reached
 * the database) leaves image files that no succeeded record points at. Their keys all sit under
 * the generation's own prefix (`images/YYYY/MM/DD/<id>/`), so each is listed by that prefix
 * (bounded) and cleared; nothing else in the store is touched.
 *
 * It runs in the background after bootstrap, so a slow or unreachable store does not hold up the
 * start, and is aborted (and awaited) when the application closes.
 */
@Injectable()
export class OrphanSweep implements OnApplicationBootstrap, OnModuleDestroy {
  private readonly logger = new Logger(OrphanSweep.name);
  private readonly stop = new AbortController();
  private running: Promise<SweepResult> = Promise.resolve({ generations: 0, deleted: 0, failed: 0, skipped: 0 });

  constructor(
    private readonly recovery: GenerationsRecovery,
    private readonly storage: StorageService,
  ) {}

  onApplicationBootstrap(): void {
    const signal = this.stop.signal;
    // Waits for recovery's bootstrap hook, whichever order Nest runs the hooks in; a close before
    // recovery ran (a failed start) ends the wait.
    const recovered = new Promise<RecoveredGeneration[]>((resolve) => {
      signal.addEventListener('abort', () => resolve([]), { once: true });
      void this.recovery.atStart.then(resolve);
    });
    this.running = recovered.then((generations) => this.sweep(generations, signal));
  }

  /** The start-up sweep's outcome, once it is over. */
  get done(): Promise<SweepResult> {
    return this.running;
  }

  async onModuleDestroy(): Promise<void> {
    this.stop.abort();
    await this.running;
  }

  /** Deletes every stored object of `generations`; never rejects. */
  async sweep(generations: RecoveredGeneration[], signal: AbortSignal): Promise<SweepResult> {
    const result: SweepResult = { generations: generations.length, deleted: 0, failed: 0, skipped: 0 };
    if (generations.length === 0) return result;
    let next = 0;
    let failuresInARow = 0;
    const giveUp = () => signal.aborted || failuresInARow >= MAX_CONSECUTIVE_FAILURES;
    const worker = async () => {
      while (next < generations.length && !giveUp()) {
        const { id, createdAt } = generations[next++]!;
        try {
          const timeout = AbortSignal.any([signal, AbortSignal.timeout(PER_GENERATION_TIMEOUT_MS)]);
          const { deleted, truncated } = await this.storage.deleteGenerationImages(id, createdAt, { signal: timeout });
          failuresInARow = 0;
          result.deleted += deleted;
          if (truncated) this.logger.warn(`Generation ${id} has more stored objects than one sweep takes; the rest stay`);
        } catch (error) {
          failuresInARow++;
          result.failed++;
          if (!signal.aborted) this.logger.warn(`Could not sweep the images of generation ${id}: ${reason(error)}`);
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(CONCURRENCY, generations.length) }, worker));
    result.skipped = generations.length - next;
    const summary = `Swept ${result.deleted} stored image(s) of ${generations.length} interrupted generation(s)`;
    if (result.failed + result.skipped === 0) this.logger.log(summary);
    else this.logger.warn(`${summary}; ${result.failed} failed and ${result.skipped} were not tried, their images stay in storage`);
    return result;
  }
}
