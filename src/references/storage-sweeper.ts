import { Injectable, Logger, OnApplicationBootstrap, OnModuleDestroy } from '@nestjs/common';
import { StorageSweepRepository } from '../database/storage-sweep.repository';
import { StorageService } from '../storage/storage.service';

/** Time between sweep rounds. */
export const SWEEP_INTERVAL_MS = 60_000;
/** Entries one round handles at most. */
const SWEEP_BATCH = 100;
/** An entry counts as due only this long after its time: instances whose clocks differ by less agree. */
export const SWEEP_CLOCK_MARGIN_MS = 60_000;
/** Retry delays after failed deletions: 30 s doubling, at most an hour. */
const FIRST_RETRY_MS = 30_000;
const MAX_RETRY_MS = 60 * 60 * 1000;
/** A round's storage calls are aborted after this. */
const ROUND_TIMEOUT_MS = 30_000;

/**
 * Deletes the stored objects on the sweep list (`storage_sweep`) once they are due: images of
 * deleted references whose deletion failed at the time, and images of uploads that never got their
 * record. One round at start, then every SWEEP_INTERVAL_MS; a failure is retried with backoff, so a
 * storage outage delays the deletions and loses none. Safe on several instances at once (deletions
 * are idempotent).
 */
@Injectable()
export class StorageSweeper implements OnApplicationBootstrap, OnModuleDestroy {
  private readonly logger = new Logger(StorageSweeper.name);
  private timer: NodeJS.Timeout | undefined;
  private round: Promise<unknown> = Promise.resolve();
  private readonly stopping = new AbortController();

  constructor(
    private readonly sweep: StorageSweepRepository,
    private readonly storage: StorageService,
  ) {}

  onApplicationBootstrap(): void {
    this.schedule(0);
  }

  async onModuleDestroy(): Promise<void> {
    this.stopping.abort();
    clearTimeout(this.timer);
    await this.round;
  }

  /** One round: deletes what is due at `now`; returns how many objects were deleted and how many failed. */
  async runOnce(now: Date = new Date()): Promise<{ deleted: number; failed: number }> {
    const due = await this.sweep.due(new Date(now.getTime() - SWEEP_CLOCK_MARGIN_MS), SWEEP_BATCH);
    const signal = AbortSignal.any([this.stopping.signal, AbortSignal.timeout(ROUND_TIMEOUT_MS)]);
    let deleted = 0;
    let failed = 0;
    for (const entry of due) {
      if (signal.aborted) break;
      try {
        await this.storage.delete(entry.key, { signal });
        await this.sweep.done(entry.key);
        deleted++;
      } catch (error) {
        failed++;
        const delay = Math.min(FIRST_RETRY_MS * 2 ** entry.attempts, MAX_RETRY_MS);
        await this.sweep.failed(entry.key, new Date(now.getTime() + delay)).catch(() => undefined);
        this.logger.warn(`Could not delete ${entry.key} (${entry.reason}), attempt ${entry.attempts + 1}; retry in ${Math.round(delay / 1000)} s: ${(error as Error)?.message ?? String(error)}`);
      }
    }
    if (deleted > 0) this.logger.log(`Storage sweep deleted ${deleted} object(s)`);
    return { deleted, failed };
  }

  private schedule(delayMs: number): void {
    if (this.stopping.signal.aborted) return;
    this.timer = setTimeout(() => {
      this.round = this.runOnce()
        .catch((error: unknown) => this.logger.warn(`Storage sweep round failed: ${(error as Error)?.message ?? String(error)}`))
        .finally(() => this.schedule(SWEEP_INTERVAL_MS));
    }, delayMs);
    this.timer.unref();
  }
}
