import { Injectable, Logger, OnModuleDestroy } from '@nestjs/common';
import type { Generation } from '../common/generation.model';
import { GenerationNotFoundError } from '../database/database.errors';
import { GenerationPatch, GenerationsRepository } from '../database/generations.repository';
import { StorageService } from '../storage/storage.service';
import { AppMetrics } from '../telemetry/app-metrics';
import { GenerationEvents } from './generation-events';

/** First pause before retrying the pending writes; doubles after every failed round up to the cap. */
const FIRST_PAUSE_MS = 500;
const MAX_PAUSE_MS = 15_000;
/** Longest wait for removing the images of a record someone else finished first. */
const IMAGE_DELETE_TIMEOUT_MS = 3_000;

interface Pending {
  /** The final state as the pipeline decided it (published to listeners already), when it is known. */
  final: Generation | null;
  /**
   * Writes it; resolves with the final record written, null when the record was final already (its
   * `images` are then deleted), or undefined when the write landed and decided nothing to announce.
   */
  write: () => Promise<Generation | null | undefined>;
  /** Images that belong to no record if the write finds the record finished elsewhere. */
  images: { key: string }[];
  since: number;
}

const reason = (error: unknown) => (error instanceof Error ? error.message : String(error));

/**
 * Final states the pipeline decided but could not write (the database busy, full or unreachable
 * through all of its inline retries). They are retried in the background (500 ms, doubling to
 * 15 s) and at once whenever another pipeline write succeeds, until they are written; each failed
 * round publishes them again, so a client that subscribed after the first publication still sees
 * its stream end. What is still pending when the service stops is left `running` in the database,
 * and the next start's recovery marks it INTERRUPTED (and sweeps its images).
 *
 * The write is conditional like every final write: if a cancel finished the record first, that
 * state stands and images this state would have referenced are deleted.
 */
@Injectable()
export class PendingFinalWrites implements OnModuleDestroy {
  private readonly logger = new Logger(PendingFinalWrites.name);
  private readonly pending = new Map<string, Pending>();
  private pause = FIRST_PAUSE_MS;
  private timer: NodeJS.Timeout | undefined;
  private flushing: Promise<void> | undefined;
  private closed = false;

  constructor(
    private readonly repository: GenerationsRepository,
    private readonly events: GenerationEvents,
    private readonly storage: StorageService,
    metrics: AppMetrics,
  ) {
    metrics.gauge(
      'pipeline.final_writes.pending',
      'Finished generations whose final state is not yet written to the database',
      () => this.pending.size,
      '{generation}',
    );
  }

  get size(): number {
    return this.pending.size;
  }

  /** Takes over `final` (the generation with `patch` applied), whose write failed. */
  add(final: Generation, patch: GenerationPatch): void {
    this.addWrite(final.id, final, () => this.repository.updateIfNotFinal(final.id, patch), patch.images ?? []);
  }

  /**
   * Takes over a write that decides a generation's final state (`write`), which failed; `final` is
   * the state listeners were told, if known, and `images` are deleted if the record turns out
   * finished by someone else.
   */
  addWrite(id: string, final: Generation | null, write: () => Promise<Generation | null | undefined>, images: { key: string }[] = []): void {
    this.pending.set(id, { final, write, images, since: Date.now() });
    this.schedule();
  }

  /** Another write just worked: the database may be back, so try now rather than after the pause. */
  kick(): void {
    if (this.pending.size === 0 || this.flushing || this.closed) return;
    this.pause = FIRST_PAUSE_MS;
    void this.flush();
  }

  /** Tries every pending write once, in order, stopping at the first that fails; one round at a time. */
  flush(): Promise<void> {
    clearTimeout(this.timer);
    this.timer = undefined;
    this.flushing ??= this.flushOnce()
      .catch((error: unknown) => this.logger.error(`Pending final writes failed: ${reason(error)}`))
      .finally(() => {
        this.flushing = undefined;
        this.schedule();
      });
    return this.flushing;
  }

  private async flushOnce(): Promise<void> {
    let failed = false;
    for (const [id, item] of this.pending) {
      try {
        const written = await item.write();
        this.pending.delete(id);
        if (written) {
          this.logger.log(`Recorded the final state of generation ${id} (${written.status}) ${Date.now() - item.since} ms late`);
          this.events.publish(written);
        } else if (written === null) {
          await this.finishedElsewhere(item);
        }
      } catch (error) {
        if (error instanceof GenerationNotFoundError) {
          this.pending.delete(id);
          continue;
        }
        failed = true;
        this.logger.warn(`Still cannot record the final state of generation ${id}: ${reason(error)}`);
        for (const { final } of this.pending.values()) if (final) this.events.publish(final);
        break;
      }
    }
    this.pause = failed ? Math.min(this.pause * 2, MAX_PAUSE_MS) : FIRST_PAUSE_MS;
  }

  /** Stops the retries after one last round; what is left is recovered at the next start. */
  async onModuleDestroy(): Promise<void> {
    this.closed = true;
    clearTimeout(this.timer);
    this.timer = undefined;
    await this.flushing;
    if (this.pending.size > 0) await this.flush();
    clearTimeout(this.timer);
    if (this.pending.size > 0) {
      this.logger.error(
        `${this.pending.size} generation(s) end without their final state in the database; the next start marks them INTERRUPTED`,
      );
    }
  }

  private schedule(): void {
    if (this.timer || this.flushing || this.closed || this.pending.size === 0) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.flush();
    }, this.pause);
    this.timer.unref();
  }

  private async finishedElsewhere(item: Pending): Promise<void> {
    // A cancel won: the images this state referenced belong to no record.
    for (const image of item.images) {
      await this.storage
        .delete(image.key, { signal: AbortSignal.timeout(IMAGE_DELETE_TIMEOUT_MS) })
        .catch((e: unknown) => this.logger.warn(`Could not delete orphan ${image.key}: ${reason(e)}`));
    }
  }
}
