import { context, metrics, trace } from '@opentelemetry/api';
import {
  AggregationTemporality,
  DataPoint,
  Histogram,
  MeterProvider,
  MetricData,
  MetricReader,
  ViewOptions,
} from '@opentelemetry/sdk-metrics';
import {
  InMemorySpanExporter,
  ReadableSpan,
  SimpleSpanProcessor,
  StackContextManager,
  TracerProvider,
} from '@opentelemetry/sdk-trace';

class CollectingReader extends MetricReader {
  constructor() {
    super({ aggregationTemporalitySelector: () => AggregationTemporality.CUMULATIVE });
  }
  protected override async onForceFlush(): Promise<void> {}
  protected override async onShutdown(): Promise<void> {}
}

export interface TestTelemetry {
  /** Ended spans, oldest first. */
  spans(): ReadableSpan[];
  /** Collects every metric now; `name` picks one. */
  metric(name: string): Promise<MetricData | undefined>;
  /** Data points of one metric (empty when it has none). */
  points(name: string): Promise<DataPoint<number | Histogram>[]>;
  /** Unregisters the global providers again. */
  uninstall(): Promise<void>;
}

/**
 * For unit tests of code that records spans or metrics: registers an in-memory TracerProvider
 * (with a synchronous context manager, so `context.with` works without async hooks) and a
 * MeterProvider that is read on demand. Install it before constructing `AppMetrics` (meters are
 * taken from the global provider at construction).
 */
export function installTestTelemetry(options: { views?: ViewOptions[] } = {}): TestTelemetry {
  const exporter = new InMemorySpanExporter();
  const tracerProvider = new TracerProvider({ spanProcessors: [new SimpleSpanProcessor({ exporter })] });
  const contextManager = new StackContextManager().enable();
  context.setGlobalContextManager(contextManager);
  trace.setGlobalTracerProvider(tracerProvider);

  const reader = new CollectingReader();
  const meterProvider = new MeterProvider({ readers: [reader], views: options.views ?? [] });
  metrics.setGlobalMeterProvider(meterProvider);

  const metric = async (name: string) => {
    const { resourceMetrics } = await reader.collect();
    return resourceMetrics.scopeMetrics.flatMap((s) => s.metrics).find((m) => m.descriptor.name === name);
  };
  return {
    spans: () => exporter.getFinishedSpans(),
    metric,
    points: async (name) => ((await metric(name))?.dataPoints ?? []) as DataPoint<number | Histogram>[],
    uninstall: async () => {
      await Promise.all([tracerProvider.shutdown(), meterProvider.shutdown()]);
      trace.disable();
      metrics.disable();
      context.disable();
    },
  };
}
