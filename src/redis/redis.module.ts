import { DynamicModule, Global, Inject, Module, OnApplicationShutdown, Optional } from '@nestjs/common';
import { AppConfig } from '../config/app-config';
import { RedisConnections } from './redis.connections';

/** Injection token of `RedisConnections`; null in the embedded deployment (no REDIS_URL). */
export const REDIS = Symbol('REDIS');

/** Closes the connections after every module that uses them has shut down (global modules go last). */
class RedisCloser implements OnApplicationShutdown {
  constructor(@Optional() @Inject(REDIS) private readonly redis: RedisConnections | null) {}

  async onApplicationShutdown(): Promise<void> {
    await this.redis?.close();
  }
}

/** Redis connections for the distributed deployment, or null without REDIS_URL. */
@Global()
@Module({})
export class RedisModule {
  static forRoot(config: AppConfig): DynamicModule {
    return {
      module: RedisModule,
      providers: [
        { provide: REDIS, useValue: config.queue.redisUrl ? new RedisConnections(config.queue.redisUrl, config.queue.prefix) : null },
        RedisCloser,
      ],
      exports: [REDIS],
    };
  }
}
