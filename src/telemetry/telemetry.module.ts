import { Global, Module } from '@nestjs/common';
import { APP_INTERCEPTOR } from '@nestjs/core';
import { OpenTelemetryModule } from 'nestjs-otel';
import { AppMetrics } from './app-metrics';
import { HttpSpanInterceptor } from './http-span.interceptor';

/**
 * Makes the metric instruments (`AppMetrics`) and nestjs-otel's `MetricService`/`TraceService`
 * (and its `@Span()` decorator) available everywhere, and puts `HttpSpanInterceptor` on every
 * route. The SDK itself is started before Nest by `startTelemetry()` (src/telemetry.ts); host
 * metrics are started there too, so nestjs-otel's own copy stays off.
 */
@Global()
@Module({
  imports: [OpenTelemetryModule.forRoot({ metrics: { hostMetrics: false } })],
  providers: [AppMetrics, { provide: APP_INTERCEPTOR, useClass: HttpSpanInterceptor }],
  exports: [AppMetrics, OpenTelemetryModule],
})
export class TelemetryModule {}
