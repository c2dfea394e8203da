import { createServer } from 'node:net';
import { metrics, trace } from '@opentelemetry/api';
import { loadConfig } from './config/app-config';
import { isUntracedRequest, startTelemetry } from './telemetry';

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

// startTelemetry keeps one SDK per process (idempotent), so each case runs in its own module registry.
function freshStart(): typeof startTelemetry {
  let fn!: typeof startTelemetry;
  jest.isolateModules(() => {
    fn = (jest.requireActual('./telemetry') as typeof import('./telemetry')).startTelemetry;
  });
  return fn;
}

describe('startTelemetry', () => {
  afterEach(() => {
    metrics.disable();
    trace.disable();
  });

  it('does nothing at all when OTEL_SDK_DISABLED=true', async () => {
    const port = await freePort();
    const handle = freshStart()(loadConfig({ OTEL_SDK_DISABLED: 'true', METRICS_PORT: String(port), METRICS_HOST: '127.0.0.1' }));

    expect(metrics.getMeter('x').createCounter('c').constructor.name).toMatch(/^Noop/);
    expect(trace.isSpanContextValid(trace.getTracer('x').startSpan('s').spanContext())).toBe(false);
    await expect(fetch(`http://127.0.0.1:${port}/metrics`)).rejects.toThrow();
    await expect(handle.shutdown()).resolves.toBeUndefined();
  });

  it('serves Prometheus metrics with the resource, runtime and host metrics, and stops on shutdown', async () => {
    const port = await freePort();
    const start = freshStart();
    const config = loadConfig({ METRICS_PORT: String(port), METRICS_HOST: '127.0.0.1', OTEL_SERVICE_NAME: 'telemetry-spec', LOG_LEVEL: 'silent' });
    const handle = start(config);
    expect(start(config)).toBe(handle);

    const series = [
      'process_cpu_utilization',
      'process_cpu_time_total',
      'process_memory_usage',
      'nodejs_eventloop_delay_p99',
      'nodejs_eventloop_utilization',
      'v8js_memory_heap_used',
    ];
    const present = (text: string) => series.filter((s) => new RegExp(`^${s}\\{`, 'm').test(text));
    // The exporter's server starts asynchronously, and event-loop delay has no value before its
    // first sampling interval: poll for a while.
    let text = '';
    for (let i = 0; i < 60 && present(text).length < series.length; i++) {
      if (i > 0) await new Promise((r) => setTimeout(r, 100));
      text = await fetch(`http://127.0.0.1:${port}/metrics`).then((r) => r.text(), () => '');
    }
    expect(present(text)).toEqual(series);
    expect(text).toMatch(/^target_info\{.*service_name="telemetry-spec".*\} 1$/m);
    expect(text).toMatch(new RegExp(`service_version="${config.version.replace(/\./g, '\\.')}"`));
    expect(text).toMatch(/service_instance_id="[0-9a-f-]{36}"/);
    // Without an OTLP endpoint nothing is recorded, but spans still carry ids for the logs.
    const span = trace.getTracer('x').startSpan('s');
    expect(span.isRecording()).toBe(false);
    expect(trace.isSpanContextValid(span.spanContext())).toBe(true);

    await handle.shutdown();
    await expect(handle.shutdown()).resolves.toBeUndefined();
    await expect(fetch(`http://127.0.0.1:${port}/metrics`)).rejects.toThrow();
  });
});

describe('isUntracedRequest', () => {
  it('skips probes, scrapes and the in-process Gemini emulator, and nothing of the API', () => {
    for (const url of ['/health/live', '/health/ready?x=1', '/metrics', '/v1/models/gemini-2.5-flash-image:generateContent', '/v1beta/models/m:generateContent']) {
      expect([url, isUntracedRequest(url)]).toEqual([url, true]);
    }
    for (const url of ['/api/v1/generations', '/api/v1/generations/abc/events', '/docs', '/health', undefined]) {
      expect([url, isUntracedRequest(url)]).toEqual([url, false]);
    }
  });
});
