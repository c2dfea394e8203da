import { Inject, Module, OnModuleDestroy } from '@nestjs/common';
import { AppConfig } from '../config/app-config';
import { REDIS } from '../redis/redis.module';
import type { RedisConnections } from '../redis/redis.connections';
import { createGenAiClient, GEMINI_CLIENT_FACTORY } from './gemini.client';
import { GEMINI_QUOTA, GeminiQuota, InProcessGeminiQuota, quotaLimits } from './gemini-quota';
import { DEFAULT_BACKOFF, GEMINI_BACKOFF, GeminiService } from './gemini.service';
import { RedisGeminiQuota } from './redis-gemini-quota';

/**
 * Gemini image generation. Needs the global `AppConfig` (ConfigModule.forRoot), `AppMetrics`
 * (TelemetryModule) and REDIS (RedisModule): with Redis the quota (GEMINI_MAX_CONCURRENCY, per-client
 * share, GEMINI_RATE_LIMIT_PER_MINUTE, 429 pauses) is shared by every instance, else it is this
 * process's. Tests change its behaviour through those and by overriding GEMINI_CLIENT_FACTORY (a fake
 * SDK) or GEMINI_BACKOFF (shorter waits) with `overrideProvider`.
 */
@Module({
  providers: [
    GeminiService,
    { provide: GEMINI_CLIENT_FACTORY, useValue: createGenAiClient },
    { provide: GEMINI_BACKOFF, useValue: DEFAULT_BACKOFF },
    {
      provide: GEMINI_QUOTA,
      inject: [AppConfig, { token: REDIS, optional: true }],
      useFactory: (config: AppConfig, redis: RedisConnections | null | undefined): GeminiQuota =>
        redis ? new RedisGeminiQuota(redis, quotaLimits(config)) : new InProcessGeminiQuota(quotaLimits(config)),
    },
  ],
  exports: [GeminiService],
})
export class GeminiModule implements OnModuleDestroy {
  constructor(@Inject(GEMINI_QUOTA) private readonly quota: GeminiQuota) {}


  async onModuleDestroy(): Promise<void> {
    await this.quota.close();
  }
}
