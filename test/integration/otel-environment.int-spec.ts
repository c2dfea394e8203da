/**
 * The OpenTelemetry SDK environment variables, each honoured by the built service as the
 * specification says, seen from a real OTLP/HTTP receiver (protobuf and JSON) and the service's
 * sockets:
 * - OTEL_BSP_MAX_EXPORT_BATCH_SIZE, OTEL_BSP_SCHEDULE_DELAY, OTEL_BSP_MAX_QUEUE_SIZE, OTEL_BSP_EXPORT_TIMEOUT;
 * - OTEL_EXPORTER_OTLP_TRACES_ENDPOINT / _METRICS_ENDPOINT alone (no base endpoint) export;
 * - OTEL_EXPORTER_OTLP_PROTOCOL and the per-signal _PROTOCOLs (default http/protobuf);
 * - OTEL_TRACES_EXPORTER=none, OTEL_METRICS_EXPORTER=none | otlp | prometheus;
 * - service.name: OTEL_RESOURCE_ATTRIBUTES over the default, OTEL_SERVICE_NAME over both;
 * - OTEL_SDK_DISABLED=true.
 * "Nothing was exported" is checked after SIGTERM, which flushes every span processor and metric
 * reader the SDK has: a signal with no exporter is the only way to send nothing then. No test waits
 * for a timer to fire; the one fixed pause (OTEL_BSP_SCHEDULE_DELAY) is one the old behaviour
 * would have been seen within, while the variable's value puts the export ten minutes away.
 */
import { listeningAddresses } from '../support/listening';
import { OtlpReceiver, startOtlpReceiver } from '../support/otlp-receiver';
import { ServiceProcess, startService } from '../support/service-process';

const SERVER = 2;
/** One request that makes exactly one span (the server span of a 404 from a handler). */
const ONE_SPAN_PATH = '/api/v1/generations/gen_unknown';

async function get(service: ServiceProcess, path = ONE_SPAN_PATH): Promise<number> {
  const res = await fetch(`${service.baseUrl}${path}`);
  await res.arrayBuffer();
  return res.status;
}

async function generate(service: ServiceProcess): Promise<void> {
  const res = await fetch(`${service.baseUrl}/api/v1/generations`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', prefer: 'wait=30' },
    body: JSON.stringify({ prompt: 'a kite over a beach', paletteSize: 3 }),
  });
  await res.arrayBuffer();
  expect(res.status).toBe(201);
}

async function eventually(check: () => boolean, what: string, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const diagLines = (service: ServiceProcess) => service.jsonLogs().filter((l) => l.context === 'OpenTelemetry');

describe('OpenTelemetry environment variables (integration)', () => {
  let receiver: OtlpReceiver;
  let service: ServiceProcess | undefined;
  const traceExports = () => receiver.exports().filter((e) => e.signal === 'traces');
  const metricExports = () => receiver.exports().filter((e) => e.signal === 'metrics');

  afterEach(async () => {
    await service?.stop();
    service = undefined;
    await receiver?.close();
  });

  describe('batch span processor (OTEL_BSP_*)', () => {
    it('OTEL_BSP_MAX_EXPORT_BATCH_SIZE=2 and OTEL_BSP_SCHEDULE_DELAY=600000: full batches of 2 at once, the rest only at shutdown', async () => {
      receiver = await startOtlpReceiver();
      service = await startService({
        OTEL_EXPORTER_OTLP_ENDPOINT: receiver.endpoint,
        OTEL_BSP_SCHEDULE_DELAY: '600000',
        OTEL_BSP_MAX_EXPORT_BATCH_SIZE: '2',
        OTEL_METRICS_EXPORTER: 'prometheus',
      });
      for (let i = 0; i < 5; i++) expect(await get(service)).toBe(404);
      // Batch size: two exports of exactly two spans, sent as soon as each batch was full
      // (with the defaults, one export of all five after 5 s).
      await eventually(() => receiver.spans().length >= 4, 'two full batches');
      expect(traceExports().map((e) => e.items)).toEqual([2, 2]);

      // Schedule delay: the fifth span waits for its batch to fill or for the delay (600 s): it is
      // still not exported after longer than the default delay of 5 s…
      await new Promise((r) => setTimeout(r, 7_000));
      expect(receiver.spans()).toHaveLength(4);
      // …and leaves with the flush on SIGTERM.
      expect(await service.stop()).toEqual({ code: 0, signal: null });
      expect(traceExports().map((e) => e.items)).toEqual([2, 2, 1]);
      expect(receiver.spans().every((s) => s.kind === SERVER && s.name === 'GET /api/v1/generations/:id')).toBe(true);
    }, 90_000);

    it('OTEL_BSP_MAX_QUEUE_SIZE=2: spans beyond the queue are dropped while an export is in flight, and that is logged', async () => {
      receiver = await startOtlpReceiver();
      receiver.holdTraces();
      service = await startService({
        OTEL_EXPORTER_OTLP_ENDPOINT: receiver.endpoint,
        OTEL_BSP_SCHEDULE_DELAY: '600000',
        OTEL_BSP_MAX_QUEUE_SIZE: '2',
        OTEL_BSP_MAX_EXPORT_BATCH_SIZE: '2',
        // The exporter must not give up on the held request itself.
        OTEL_EXPORTER_OTLP_TIMEOUT: '600000',
        OTEL_METRICS_EXPORTER: 'prometheus',
      });
      // Two spans: a full batch, exported; the receiver holds the answer.
      for (let i = 0; i < 2; i++) await get(service);
      await eventually(() => (receiver.requests()['/v1/traces'] ?? 0) === 1, 'the first export');
      // Five more while it is in flight: two fit in the queue, three do not.
      for (let i = 0; i < 5; i++) await get(service);
      receiver.release();
      await eventually(() => receiver.spans().length >= 4, 'the first two batches');
      // The next span finds room again; the processor then reports what it dropped.
      await get(service);
      expect(await service.stop()).toEqual({ code: 0, signal: null });

      const dropped = diagLines(service)
        .map((l) => /^Dropped (\d+) spans because maxQueueSize reached$/.exec(String(l.msg)))
        .filter((m) => m !== null)
        .reduce((sum, m) => sum + Number(m[1]), 0);
      // Spans 5 and 6 (at least) ended while the first export was held; 7 too, unless it ended after the release.
      expect(dropped).toBeGreaterThanOrEqual(2);
      expect(receiver.spans().length).toBe(8 - dropped);
    }, 90_000);

    it('OTEL_BSP_EXPORT_TIMEOUT=300: an export the backend does not answer is abandoned after 300 ms, with a log line', async () => {
      receiver = await startOtlpReceiver();
      receiver.holdTraces();
      service = await startService({
        OTEL_EXPORTER_OTLP_ENDPOINT: receiver.endpoint,
        OTEL_BSP_EXPORT_TIMEOUT: '300',
        OTEL_BSP_MAX_EXPORT_BATCH_SIZE: '1',
        OTEL_EXPORTER_OTLP_TIMEOUT: '600000',
        OTEL_METRICS_EXPORTER: 'prometheus',
      });
      await get(service);
      const s = service;
      // The default (30 s) would not give up within this wait.
      await eventually(() => diagLines(s).some((l) => l.level === 'error' && l.msg === 'Error: Timeout'), 'the export timeout in the log', 15_000);
      receiver.release();
    }, 90_000);
  });

  it('OTEL_EXPORTER_OTLP_TRACES_ENDPOINT / _METRICS_ENDPOINT alone export each signal to that URL; per-signal protocols win over OTEL_EXPORTER_OTLP_PROTOCOL', async () => {
    receiver = await startOtlpReceiver({ paths: { traces: '/custom/spans', metrics: '/custom/metrics' } });
    service = await startService({
      OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: receiver.url('traces'),
      OTEL_EXPORTER_OTLP_METRICS_ENDPOINT: receiver.url('metrics'),
      OTEL_EXPORTER_OTLP_PROTOCOL: 'http/protobuf',
      OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: 'http/json',
      OTEL_EXPORTER_OTLP_METRICS_PROTOCOL: 'http/json',
      OTEL_BSP_SCHEDULE_DELAY: '100',
      OTEL_METRIC_EXPORT_INTERVAL: '500',
    });
    await generate(service);
    await eventually(() => receiver.spans().some((s) => s.name === 'pipeline.image') && receiver.metricNames().has('pipeline.stage.duration'), 'spans and metrics');
    expect(await service.stop()).toEqual({ code: 0, signal: null });
    expect(new Set(receiver.exports().map((e) => `${e.path} ${e.encoding}`))).toEqual(new Set(['/custom/spans json', '/custom/metrics json']));
    expect(receiver.requests()).not.toHaveProperty('/v1/traces');
  }, 90_000);

  it('OTEL_EXPORTER_OTLP_PROTOCOL=http/json, OTEL_TRACES_EXPORTER=none, OTEL_METRICS_EXPORTER=otlp; service.name from OTEL_RESOURCE_ATTRIBUTES', async () => {
    receiver = await startOtlpReceiver();
    service = await startService({
      OTEL_EXPORTER_OTLP_ENDPOINT: receiver.endpoint,
      OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json',
      OTEL_TRACES_EXPORTER: 'none',
      OTEL_METRICS_EXPORTER: 'otlp',
      OTEL_RESOURCE_ATTRIBUTES: 'service.name=his-from-attributes,deployment.environment.name=test',
      OTEL_METRIC_EXPORT_INTERVAL: '500',
    });
    await generate(service);
    const s = service;
    await eventually(() => receiver.metricNames().has('pipeline.stage.duration'), 'metrics');
    // otlp only: no Prometheus endpoint.
    expect(listeningAddresses(s.metricsPort)).toEqual([]);
    // Without span export the middleware records the HTTP server histogram.
    await eventually(() => receiver.metricNames().has('http.server.request.duration'), 'http.server.request.duration');
    expect(await service.stop()).toEqual({ code: 0, signal: null });

    expect(traceExports()).toEqual([]);
    expect(new Set(metricExports().map((e) => e.encoding))).toEqual(new Set(['json']));
    const resource = receiver.metrics().at(-1)!.resource;
    expect(resource).toMatchObject({ 'service.name': 'his-from-attributes', 'deployment.environment.name': 'test' });
  }, 90_000);

  it('default protocol http/protobuf, OTEL_METRICS_EXPORTER=none; OTEL_SERVICE_NAME wins over OTEL_RESOURCE_ATTRIBUTES', async () => {
    receiver = await startOtlpReceiver();
    service = await startService({
      OTEL_EXPORTER_OTLP_ENDPOINT: receiver.endpoint,
      OTEL_METRICS_EXPORTER: 'none',
      OTEL_RESOURCE_ATTRIBUTES: 'service.name=his-from-attributes,deployment.environment.name=test',
      OTEL_SERVICE_NAME: 'his-from-name',
      OTEL_BSP_SCHEDULE_DELAY: '100',
    });
    await generate(service);
    await eventually(() => receiver.spans().some((sp) => sp.name === 'pipeline.image'), 'spans');
    expect(listeningAddresses(service.metricsPort)).toEqual([]);
    expect(await service.stop()).toEqual({ code: 0, signal: null });

    expect(metricExports()).toEqual([]);
    expect(new Set(traceExports().map((e) => e.encoding))).toEqual(new Set(['protobuf']));
    expect(receiver.spans()[0].resource).toMatchObject({ 'service.name': 'his-from-name', 'deployment.environment.name': 'test' });
  }, 90_000);

  it('OTEL_METRICS_EXPORTER=prometheus with an OTLP endpoint: /metrics is served, traces go over OTLP, metrics do not', async () => {
    receiver = await startOtlpReceiver();
    service = await startService({
      OTEL_EXPORTER_OTLP_ENDPOINT: receiver.endpoint,
      OTEL_METRICS_EXPORTER: 'prometheus',
      OTEL_METRIC_EXPORT_INTERVAL: '500',
      OTEL_BSP_SCHEDULE_DELAY: '100',
    });
    await generate(service);
    await eventually(() => receiver.spans().some((sp) => sp.name === 'pipeline.image'), 'spans');
    expect(await (await fetch(service.metricsUrl!)).text()).toMatch(/^pipeline_stage_duration_count\{/m);
    expect(await service.stop()).toEqual({ code: 0, signal: null });
    expect(metricExports()).toEqual([]);
  }, 90_000);

  it('OTEL_SDK_DISABLED=true: nothing exported, no metrics endpoint, the API works', async () => {
    receiver = await startOtlpReceiver();
    service = await startService({ OTEL_EXPORTER_OTLP_ENDPOINT: receiver.endpoint, OTEL_SDK_DISABLED: 'true', OTEL_METRIC_EXPORT_INTERVAL: '500' });
    await generate(service);
    expect(listeningAddresses(service.metricsPort)).toEqual([]);
    expect(await service.stop()).toEqual({ code: 0, signal: null });
    expect(receiver.exports()).toEqual([]);
  }, 90_000);
});
