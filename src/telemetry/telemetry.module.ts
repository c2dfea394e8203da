import { Global, Module } from '@nestjs/common';
import { AppMetrics } from './app-metrics';

/** Makes the metric instruments injectable everywhere. */
@Global()
@Module({ providers: [AppMetrics], exports: [AppMetrics] })
export class TelemetryModule {}
