import { DynamicModule, Module } from '@nestjs/common';
import { AuthModule } from './auth/auth.module';
import { AppConfig } from './config/app-config';
import { ConfigModule } from './config/config.module';
import { DatabaseModule } from './database/database.module';
import { GenerationsModule } from './generations/generations.module';
import { HealthModule } from './health/health.module';
import { LoggingModule } from './logging/logging.module';
import { PalettesModule } from './palettes/palettes.module';
import { OverloadModule } from './overload/overload.module';
import { PipelineModule } from './pipeline/pipeline.module';
import { ReferencesModule } from './references/references.module';
import { RedisModule } from './redis/redis.module';
import { SearchModule } from './search/search.module';
import { TelemetryModule } from './telemetry/telemetry.module';

@Module({})
export class AppModule {
  static forRoot(config: AppConfig): DynamicModule {
    return {
      module: AppModule,
      imports: [
        ConfigModule.forRoot(config),
        LoggingModule,
        TelemetryModule,
        AuthModule,
        RedisModule.forRoot(config),
        DatabaseModule,
        PipelineModule.forRoot(config),
        OverloadModule,
        // ROLE=worker serves only health and metrics.
        ...(config.queue.role === 'worker' ? [] : [GenerationsModule, PalettesModule, ReferencesModule, SearchModule]),
        HealthModule,
      ],
    };
  }
}
