import { Global, Module } from '@nestjs/common';
import { TerminusModule } from '@nestjs/terminus';
import { HealthController } from './health.controller';
import { QueueHealthIndicator, DatabaseHealthIndicator, PaletteHealthIndicator, ShutdownHealthIndicator, StorageHealthIndicator } from './indicators';
import { ShutdownState } from './shutdown-state';

@Global()
@Module({
  imports: [TerminusModule.forRoot({ errorLogStyle: 'pretty', logger: false })],
  controllers: [HealthController],
  providers: [ShutdownState, StorageHealthIndicator, DatabaseHealthIndicator, PaletteHealthIndicator, ShutdownHealthIndicator, QueueHealthIndicator],
  exports: [ShutdownState],
})
export class HealthModule {}
