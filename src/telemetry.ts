/**
 * OpenTelemetry bootstrap. `main.ts` calls `startTelemetry()` before it imports anything that
 * loads `http`/`express`/`@nestjs/core`: in CommonJS the instrumentations patch a module only when
 * it is required after they were registered, and meters created before the MeterProvider exists
 * stay no-ops for good.
 *
 * Everything it starts is turned off by `OTEL_SDK_DISABLED=true` (no SDK objects, no patching,
 * no metrics server), which is what the overhead benchmark compares against.
 *
 * Incoming HTTP requests are instrumented (server spans) only when spans are exported; otherwise
 * `httpServerDurationMiddleware` (registered by `configureApp`) records http.server.request.duration
 * alone. See `httpServerDurationSource` and docs/observability.md, "Overhead".
 */
import { diag } from '@opentelemetry/api';
import { getNumberFromEnv } from '@opentelemetry/core';
import { OTLPMetricExporter as OTLPJsonMetricExporter } from '@opentelemetry/exporter-metrics-otlp-http';
import { OTLPMetricExporter as OTLPProtoMetricExporter } from '@opentelemetry/exporter-metrics-otlp-proto';
import { PrometheusExporter } from '@opentelemetry/exporter-prometheus';
import { OTLPTraceExporter as OTLPJsonTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { OTLPTraceExporter as OTLPProtoTraceExporter } from '@opentelemetry/exporter-trace-otlp-proto';
import { HostMetrics } from '@opentelemetry/host-metrics';
import { HttpInstrumentation } from '@opentelemetry/instrumentation-http';
import { RuntimeNodeInstrumentation } from '@opentelemetry/instrumentation-runtime-node';
import { defaultResource, resourceFromAttributes } from '@opentelemetry/resources';
import { IMetricReader, PeriodicExportingMetricReader, PushMetricExporter } from '@opentelemetry/sdk-metrics';
import { NodeSDK } from '@opentelemetry/sdk-node';
import { AlwaysOffSampler, NoopSpanProcessor, SpanExporter } from '@opentelemetry/sdk-trace';
import { ATTR_SERVICE_VERSION } from '@opentelemetry/semantic-conventions';
import type { ServerResponse } from 'node:http';
import type { AppConfig } from './config/app-config';
import type { OtlpProtocol } from './config/telemetry-config';
import { redactQuery } from './logging/redact-url';
import { routeDiagnostics, serviceLogger } from './telemetry/diag-logger';
import { captureRouteOnFinish } from './telemetry/http-route';
import { httpServerDurationSource, isUntracedRequest } from './telemetry/http-server-policy';
import { metricViews } from './telemetry/metric-views';

export interface TelemetryHandle {
  /** Flushes pending spans and metrics (OTLP) and stops the metrics server. Safe to call twice. */
  shutdown(): Promise<void>;
}

export { isUntracedRequest } from './telemetry/http-server-policy';

let active: TelemetryHandle | undefined;

/**
 * Starts the OpenTelemetry SDK once per process (later calls return the same handle); a no-op
 * handle when `config.telemetry.disabled`.
 *
 * What is exported follows the OpenTelemetry variables as `config.telemetry` read them
 * (src/config/telemetry-config.ts). Traces: when OTLP export is on, sdk-node gets the exporter as
 * `traceExporter` and builds the BatchSpanProcessor itself, which is where OTEL_BSP_SCHEDULE_DELAY,
 * _MAX_EXPORT_BATCH_SIZE, _MAX_QUEUE_SIZE and _EXPORT_TIMEOUT are read (a processor built here would
 * ignore them). The exporters read their endpoint (OTEL_EXPORTER_OTLP_[TRACES_|METRICS_]ENDPOINT),
 * headers and timeout themselves. Metrics: the readers are built here, because the Prometheus one
 * listens on METRICS_HOST:METRICS_PORT, not on the SDK's OTEL_EXPORTER_PROMETHEUS_* defaults.
 */
export function startTelemetry(config: AppConfig): TelemetryHandle {
  if (active) return active;
  const telemetry = config.telemetry;
  if (telemetry.disabled) {
    active = { shutdown: async () => undefined };
    return active;
  }
  // First, so that whatever the exporters say while they are built reaches the log.
  const logger = serviceLogger(config.logLevel);
  routeDiagnostics(logger, telemetry.diagLogLevel);
  for (const warning of telemetry.warnings) diag.warn(warning);

  const metricReaders: IMetricReader[] = [];
  if (telemetry.metrics.prometheus) {
    const { host, port } = config.metrics;
    const url = `http://${host.includes(':') ? `[${host}]` : host}:${port}/metrics`;
    metricReaders.push(
      new PrometheusExporter({ host, port, endpoint: '/metrics' }, (error) => {
        // A port already taken: the service keeps running without the endpoint, and says so.
        if (error) logger.error(`Prometheus metrics endpoint ${url} could not start (${error.message}): no metrics are served there`);
        else logger.info(`Prometheus metrics at ${url}`);
      }),
    );
  }
  if (telemetry.metrics.otlp) {
    metricReaders.push(new PeriodicExportingMetricReader({ exporter: otlpMetricExporter(telemetry.metrics.otlp), ...exportTiming() }));
  }
  const traceExporter = telemetry.traces.otlp ? otlpTraceExporter(telemetry.traces.otlp) : undefined;
  const serverSpans = httpServerDurationSource(config) === 'instrumentation';

  const sdkOptions: ConstructorParameters<typeof NodeSDK>[0] = {
    // OTEL_SERVICE_NAME, else `service.name` from OTEL_RESOURCE_ATTRIBUTES, else the default (the
    // configuration resolved that order); merged over every detected attribute.
    serviceName: telemetry.serviceName,
    resource: defaultResource().merge(resourceFromAttributes({ [ATTR_SERVICE_VERSION]: config.version })),
    metricReaders,
    views: metricViews(),
    // Without OTLP trace export: a TracerProvider that records nothing, so spans still get ids (log
    // lines written inside a generation carry its trace_id) but no span data is built for nobody.
    // With it, the sampler comes from OTEL_TRACES_SAMPLER (default parentbased_always_on).
    ...(traceExporter ? { traceExporter } : { spanProcessors: [new NoopSpanProcessor()], sampler: new AlwaysOffSampler() }),
    // Logs go to stdout as JSON (pino, with trace ids); without this the SDK would default
    // to an OTLP log exporter aimed at localhost:4318.
    logRecordProcessors: [],
    // HTTP with an OTLP endpoint: server spans (parent of the pipeline spans, trace ids for the
    // request's log lines) and http.server.request.duration; HttpSpanInterceptor adds route,
    // controller and handler. Without one, the instrumentation is kept for outgoing requests
    // only (S3 calls: http.client.request.duration): its server side costs 0.14–0.18 ms of CPU per
    // request (span, AsyncLocalStorage context, emitter binding) for spans nobody receives, and
    // httpServerDurationMiddleware records the server histogram instead.
    // Not registered, on purpose: instrumentation-express, because Nest 12 is ESM and imports
    // express through the ESM loader, which require-in-the-middle never sees (an
    // import-in-the-middle loader hook makes it work, for one `request handler` span per request
    // that tells nothing the server span does not); instrumentation-nestjs-core 0.71, which
    // supports Nest < 12 only. See docs/observability.md.
    instrumentations: [
      new HttpInstrumentation({
        disableIncomingRequestInstrumentation: !serverSpans,
        ignoreIncomingRequestHook: (req) => isUntracedRequest(req.url),
        // The instrumentation redacts only a few signature parameters (case-sensitively) from
        // `url.query`; this replaces it with the query minus every credential-like parameter.
        startIncomingSpanHook: (req) => incomingSpanAttributes(req.url),
        // Server side only: there the response is a ServerResponse (client side: an IncomingMessage).
        responseHook: (_span, response) => {
          if ('setHeader' in response) captureRouteOnFinish(response as ServerResponse);
        },
      }),
      new RuntimeNodeInstrumentation(),
    ],
  };
  // sdk-node installs a console diag logger of its own when OTEL_LOG_LEVEL is set (and would
  // complain about replacing this one): the service's is put back once it is built.
  diag.disable();
  const sdk = new NodeSDK(sdkOptions);
  routeDiagnostics(logger, telemetry.diagLogLevel);
  sdk.start();

  if (metricReaders.length > 0) {
    // Network and per-core groups are skipped: they are host concerns (node exporter) and cost
    // a /proc walk per collection.
    new HostMetrics({
      name: '@opentelemetry/host-metrics',
      metricGroups: ['process.cpu', 'process.memory', 'system.cpu', 'system.memory'],
    }).start();
  }

  let stopping: Promise<void> | undefined;
  active = {
    shutdown: () =>
      (stopping ??= sdk.shutdown().catch((error: unknown) => {
        diag.error('telemetry shutdown failed', error);
      })),
  };
  return active;
}

/** Attributes that override the HTTP instrumentation's own for a server span: `url.query`, redacted. */
export function incomingSpanAttributes(url: string | undefined): Record<string, string> {
  const q = (url ?? '').indexOf('?');
  return q < 0 ? {} : { 'url.query': redactQuery(url!.slice(q + 1)) };
}

/** The OTLP exporters for OTEL_EXPORTER_OTLP_[TRACES_]PROTOCOL: protobuf (the specification's default) or JSON. */
function otlpTraceExporter(protocol: OtlpProtocol): SpanExporter {
  return protocol === 'http/json' ? new OTLPJsonTraceExporter() : new OTLPProtoTraceExporter();
}

function otlpMetricExporter(protocol: OtlpProtocol): PushMetricExporter {
  return protocol === 'http/json' ? new OTLPJsonMetricExporter() : new OTLPProtoMetricExporter();
}

/** The SDK's standard export timing variables (OTel defaults: 60 s interval, 30 s timeout). */
function exportTiming(): { exportIntervalMillis: number; exportTimeoutMillis: number } {
  const exportIntervalMillis = positive(getNumberFromEnv('OTEL_METRIC_EXPORT_INTERVAL')) ?? 60_000;
  const exportTimeoutMillis = Math.min(positive(getNumberFromEnv('OTEL_METRIC_EXPORT_TIMEOUT')) ?? 30_000, exportIntervalMillis);
  return { exportIntervalMillis, exportTimeoutMillis };
}

function positive(value: number | undefined): number | undefined {
  return value !== undefined && value > 0 ? value : undefined;
}
