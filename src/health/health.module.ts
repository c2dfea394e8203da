import { Global, Module } from '@nestjs/common';
import { TerminusModule } from '@nestjs/terminus';
import { PipelineModule } from '../pipeline/pipeline.module';
import { HealthController } from './health.controller';
import { DatabaseHealthIndicator, PaletteHealthIndicator, ShutdownHealthIndicator, StorageHealthIndicator } from './indicators';
import { ShutdownState } from './shutdown-state';

@Global()
@Module({
  imports: [TerminusModule.forRoot({ errorLogStyle: 'pretty', logger: false }), PipelineModule],
  controllers: [HealthController],
  providers: [ShutdownState, StorageHealthIndicator, DatabaseHealthIndicator, PaletteHealthIndicator, ShutdownHealthIndicator],
  exports: [ShutdownState],
})
export class HealthModule {}
