import { DynamicModule, Global, Module } from '@nestjs/common';
import { AppConfig, getConfig } from './app-config';

/** Provides the validated `AppConfig` everywhere. `forRoot(config)` lets tests pass their own. */
@Global()
@Module({})
export class ConfigModule {
  static forRoot(config: AppConfig = getConfig()): DynamicModule {
    return { module: ConfigModule, providers: [{ provide: AppConfig, useValue: config }], exports: [AppConfig] };
  }
}
