import { DynamicModule, Global, Inject, Module, OnModuleDestroy, Provider } from '@nestjs/common';
import { AppConfig } from '../config/app-config';
import { GeminiModule } from '../gemini/gemini.module';
import { OverloadModule } from '../overload/overload.module';
import { PaletteModule } from '../palette/palette.module';
import type { RedisConnections } from '../redis/redis.connections';
import { REDIS } from '../redis/redis.module';
import { StorageModule } from '../storage/storage.module';
import { AppMetrics } from '../telemetry/app-metrics';
import { BullMqJobQueue } from './bullmq-job-queue';
import { PendingFinalWrites } from './final-writes';
import { GenerationEvents } from './generation-events';
import { GenerationRunner } from './generation-runner';
import { InProcessJobQueue } from './in-process-job-queue';
import { JobQueue } from './job-queue';
import { LostJobReconciler } from './lost-job-reconciler';
import { OrphanSweep } from './orphan-sweep';
import { PipelineService } from './pipeline.service';
import { ReferenceImages } from './reference-images';
import { RedisGenerationEvents } from './redis-generation-events';

/** Closes the queue and the events (their Redis subscriptions) after the pipeline has drained. */
class PipelinePorts implements OnModuleDestroy {
  constructor(
    @Inject(JobQueue) private readonly queue: JobQueue,
    @Inject(GenerationEvents) private readonly events: GenerationEvents,
  ) {}

  async onModuleDestroy(): Promise<void> {
    await this.queue.close();
    await this.events.close();
  }
}

/**
 * The pipeline, wired for the deployment: the job queue and the events are in-process without
 * REDIS_URL and on Redis (BullMQ, pub/sub) with it, chosen once here; nothing else asks which. The API
 * side (PipelineService) is always present; the worker side (GenerationRunner with Gemini, and the
 * lost-job reconciler) only when ROLE includes work, so `ROLE=api` never calls Gemini. Global: the
 * HTTP modules and health use its exports.
 */
@Global()
@Module({})
export class PipelineModule {
  static forRoot(config: AppConfig): DynamicModule {
    const worker = config.queue.role !== 'api';
    const ports: Provider[] = [
      {
        provide: JobQueue,
        inject: [REDIS, AppMetrics],
        useFactory: (redis: RedisConnections | null, metrics: AppMetrics): JobQueue =>
          redis
            ? new BullMqJobQueue(redis, { concurrency: config.queue.workerConcurrency, lockMs: config.queue.lockMs, maxTakeovers: config.queue.maxTakeovers }, metrics)
            : new InProcessJobQueue(),
      },
      {
        provide: GenerationEvents,
        inject: [REDIS],
        useFactory: (redis: RedisConnections | null): GenerationEvents => (redis ? new RedisGenerationEvents(redis) : new GenerationEvents()),
      },
      PipelinePorts,
    ];
    return {
      module: PipelineModule,
      imports: [StorageModule, PaletteModule, OverloadModule, ...(worker ? [GeminiModule] : [])],
      providers: [...ports, PipelineService, PendingFinalWrites, OrphanSweep, ...(worker ? [GenerationRunner, LostJobReconciler, ReferenceImages] : [])],
      exports: [PipelineService, GenerationEvents, JobQueue, StorageModule, PaletteModule],
    };
  }
}
