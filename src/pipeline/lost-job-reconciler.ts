import { Inject, Injectable, Logger, OnApplicationBootstrap, OnModuleDestroy } from '@nestjs/common';
import { AppConfig } from '../config/app-config';
import { GenerationsRepository } from '../database/generations.repository';
import type { RedisConnections } from '../redis/redis.connections';
import { REDIS } from '../redis/redis.module';
import { GenerationRunner } from './generation-runner';
import { JobQueue } from './job-queue';

/** How often one instance looks for lost jobs. */
const EVERY_MS = 30_000;
/** Generations per round. */
const BATCH = 200;

/**
 * Distributed deployment: finds generations whose jobs the queue no longer holds (Redis restarted and
 * kept nothing, or a job failed while the database was away so its last word was never written) and
 * records their missing images INTERRUPTED, so no generation stays queued or running forever. Jobs a
 * live worker holds, or that wait in the queue, are never touched: only images with no record and no
 * job are. One instance at a time (a Redis lock), every 30 s, on generations older than twice the
 * job lock (a newer one may still be between its insert and its enqueue).
 */
@Injectable()
export class LostJobReconciler implements OnApplicationBootstrap, OnModuleDestroy {
  private readonly logger = new Logger(LostJobReconciler.name);
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<number> | undefined;

  constructor(
    private readonly config: AppConfig,
    private readonly repository: GenerationsRepository,
    private readonly runner: GenerationRunner,
    @Inject(JobQueue) private readonly queue: JobQueue,
    @Inject(REDIS) private readonly redis: RedisConnections | null,
  ) {}

  onApplicationBootstrap(): void {
    if (!this.redis) return;
    this.timer = setInterval(() => void this.reconcileOnce(), EVERY_MS);
    this.timer.unref();
  }

  async onModuleDestroy(): Promise<void> {
    clearInterval(this.timer);
    await this.running?.catch(() => undefined);
  }

  /**
   * One round (if no other instance runs one) over unfinished generations older than `minAgeMs`;
   * resolves with how many images it recorded lost.
   */
  reconcileOnce(minAgeMs = Math.max(2 * this.config.queue.lockMs, 60_000)): Promise<number> {
    this.running ??= this.round(minAgeMs)
      .catch((error: unknown) => {
        this.logger.warn(`Reconciliation failed: ${String(error)}`);
        return 0;
      })
      .finally(() => (this.running = undefined));
    return this.running;
  }

  private async round(minAgeMs: number): Promise<number> {
    const redis = this.redis;
    if (!redis) return 0;
    const lock = redis.key('reconcile', 'lock');
    // Held until it expires: one round per period over all instances.
    if ((await redis.command.set(lock, String(process.pid), 'PX', EVERY_MS - 1_000, 'NX')) !== 'OK') return 0;
    return this.recordLost(minAgeMs);
  }

  private async recordLost(minAgeMs: number): Promise<number> {
    const before = new Date(Date.now() - minAgeMs);
    let lost = 0;
    for (const generation of await this.repository.unfinishedBefore(before, BATCH)) {
      const recorded = new Set((await this.repository.imagesOf(generation.id)).map((r) => r.index));
      for (let index = 0; index < generation.count; index++) {
        if (recorded.has(index) || (await this.queue.isQueued(generation.id, index))) continue;
        await this.runner.recordLost({ generationId: generation.id, index, owner: generation.owner, client: '' }, 'its job is no longer in the queue');
        lost++;
      }
    }
    if (lost > 0) this.logger.warn(`Recorded ${lost} lost image job(s) INTERRUPTED`);
    return lost;
  }
}
