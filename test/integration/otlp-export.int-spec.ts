/**
 * OTLP export, end to end: the built service, pointed at a small OTLP/HTTP receiver with
 * OTEL_EXPORTER_OTLP_ENDPOINT, exports one trace per generation request whose spans link
 * request → pipeline → gemini / upload / palette, the contract's metrics, and the resource
 * attributes; its JSON log lines carry the trace id of the request they belong to; and SIGTERM
 * flushes what is still buffered.
 */
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { OtlpReceiver, ReceivedSpan, startOtlpReceiver } from '../support/otlp-receiver';
import { ServiceProcess, startService } from '../support/service-process';

const PKG_VERSION = (JSON.parse(readFileSync(resolve(__dirname, '..', '..', 'package.json'), 'utf8')) as { version: string }).version;
const SERVER = 2;
const CLIENT = 3;

describe('OTLP export', () => {
  let receiver: OtlpReceiver;
  let service: ServiceProcess;
  let generationId: string;

  beforeAll(async () => {
    receiver = await startOtlpReceiver();
    service = await startService({
      OTEL_EXPORTER_OTLP_ENDPOINT: receiver.endpoint,
      OTEL_METRIC_EXPORT_INTERVAL: '1000',
      OTEL_SERVICE_NAME: 'his-otlp-test',
      PALETTE_WORKERS: '1',
    });
    const res = await fetch(`${service.baseUrl}/api/v1/generations`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', prefer: 'wait=30' },
      body: JSON.stringify({ prompt: 'a paper boat on a pond', count: 1, paletteSize: 4 }),
    });
    expect(res.status).toBe(201);
    generationId = ((await res.json()) as { id: string }).id;
  }, 60_000);

  afterAll(async () => {
    await service?.stop();
    await receiver?.close();
  });

  const byName = (name: string) => receiver.spans().filter((s) => s.name === name);
  const describeSpans = () => receiver.spans().map((s) => `${s.name}(${s.spanId}←${s.parentSpanId})`).join(', ');

  /** The chain of ancestors of `span` (nearest first) among the received spans. */
  function ancestors(span: ReceivedSpan): ReceivedSpan[] {
    const byId = new Map(receiver.spans().map((s) => [s.spanId, s]));
    const chain: ReceivedSpan[] = [];
    for (let p = byId.get(span.parentSpanId); p; p = byId.get(p.parentSpanId)) chain.push(p);
    return chain;
  }

  it('exports request → pipeline → gemini/upload/palette spans with correct parent links', async () => {
    const wanted = ['POST /api/v1/generations', 'pipeline.image', 'pipeline.gemini', 'pipeline.upload', 'pipeline.palette'];
    await receiver.waitFor(
      () => wanted.every((n) => byName(n).length > 0) && receiver.spans().some((s) => s.kind === CLIENT && s.name.startsWith('generate_content')),
      15_000,
      () => `spans so far: ${describeSpans()}`,
    );

    const [request] = byName('POST /api/v1/generations');
    expect(request.kind).toBe(SERVER);
    expect(request.attributes).toMatchObject({ 'http.route': '/api/v1/generations', 'http.request.method': 'POST', 'http.response.status_code': 201 });
    expect(request.resource).toMatchObject({ 'service.name': 'his-otlp-test', 'service.version': PKG_VERSION });
    expect(request.resource['service.instance.id']).toEqual(expect.any(String));

    const [pipeline] = byName('pipeline.image');
    expect(pipeline.traceId).toBe(request.traceId);
    expect(ancestors(pipeline)).toContain(request);

    for (const stage of ['pipeline.gemini', 'pipeline.upload', 'pipeline.palette']) {
      const [span] = byName(stage);
      expect(span.traceId).toBe(request.traceId);
      expect(span.parentSpanId).toBe(pipeline.spanId);
    }

    // The Gemini call follows the GenAI semantic conventions, under its stage span.
    const gemini = receiver.spans().find((s) => s.kind === CLIENT && s.name.startsWith('generate_content'))!;
    expect(gemini.name).toBe(`generate_content ${gemini.attributes['gen_ai.request.model']}`);
    expect(gemini.attributes).toMatchObject({
      'gen_ai.operation.name': 'generate_content',
      'gen_ai.request.model': 'gemini-2.5-flash-image',
      'gen_ai.usage.input_tokens': expect.any(Number),
      'gen_ai.usage.output_tokens': expect.any(Number),
    });
    expect(ancestors(gemini).map((s) => s.name)).toContain('pipeline.gemini');

    // No span attribute carries the generation id in a name (names stay bounded).
    for (const s of receiver.spans()) expect(s.name).not.toContain(generationId);
  });

  it('exports the contract metrics with their units', async () => {
    const wanted: Record<string, string> = {
      'pipeline.stage.duration': 's',
      'gen_ai.client.operation.duration': 's',
      'gen_ai.client.token.usage': '{token}',
      'http.server.request.duration': 's',
      'gemini.semaphore.wait.duration': 's',
      'gemini.semaphore.in_flight': '{call}',
      'gemini.semaphore.waiting': '{call}',
      'process.cpu.utilization': '',
      'process.memory.usage': '',
      'nodejs.eventloop.delay.p99': 's',
      'nodejs.eventloop.utilization': '1',
    };
    await receiver.waitFor(
      () => Object.keys(wanted).every((n) => receiver.metricNames().has(n)),
      15_000,
      () => `missing: ${Object.keys(wanted).filter((n) => !receiver.metricNames().has(n)).join(', ')}`,
    );
    const latest = (name: string) => receiver.metrics().filter((m) => m.name === name).at(-1)!;
    for (const [name, unit] of Object.entries(wanted)) expect([name, latest(name).unit]).toEqual([name, unit]);

    const stages = latest('pipeline.stage.duration').points.map((p) => p.attributes.stage);
    expect(stages).toEqual(expect.arrayContaining(['queue', 'gemini', 'upload', 'palette']));
    const route = latest('http.server.request.duration').points.find((p) => p.attributes['http.route'] === '/api/v1/generations');
    expect(route?.attributes).toMatchObject({ 'http.request.method': 'POST', 'http.response.status_code': 201 });
    expect(latest('pipeline.stage.duration').resource['service.name']).toBe('his-otlp-test');
    // No OTEL_EXPORTER_OTLP_PROTOCOL: the specification's default encoding, protobuf, for both signals.
    expect(new Set(receiver.exports().map((e) => `${e.signal} ${e.encoding}`))).toEqual(new Set(['traces protobuf', 'metrics protobuf']));
  });

  it('writes JSON logs whose trace ids lead to the exported trace', async () => {
    const [request] = byName('POST /api/v1/generations');
    const lines = service.jsonLogs().filter((l) => l.trace_id === request.traceId);
    expect(lines.length).toBeGreaterThan(0);
    const completed = lines.find((l) => l.msg === 'request completed');
    expect(completed).toMatchObject({ req: { method: 'POST', url: '/api/v1/generations' }, res: { statusCode: 201 } });
  });

  it('flushes buffered spans on SIGTERM and exits 0', async () => {
    // A request just before the stop: its span is still in the batch processor's buffer (5 s delay).
    await fetch(`${service.baseUrl}/api/v1/generations/${generationId}`).then((r) => r.arrayBuffer());
    const exit = await service.stop('SIGTERM');
    expect(exit).toEqual({ code: 0, signal: null });
    expect(byName('GET /api/v1/generations/:id').length).toBeGreaterThan(0);
  });
});
