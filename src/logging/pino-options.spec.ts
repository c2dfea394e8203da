import { createServer, Server } from 'node:http';
import { AddressInfo } from 'node:net';
import { Writable } from 'node:stream';
import { context, INVALID_SPAN_CONTEXT, trace, TraceFlags } from '@opentelemetry/api';
import pino from 'pino';
import { pinoHttp } from 'pino-http';
import { installTestTelemetry, TestTelemetry } from '../telemetry/testing';
import { pinoHttpOptions } from './pino-options';

/** A destination that keeps every JSON line pino writes. */
function memoryStream(): { stream: Writable; lines: () => Record<string, unknown>[] } {
  const chunks: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, done) {
      chunks.push(chunk.toString());
      done();
    },
  });
  const lines = () =>
    chunks
      .join('')
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as Record<string, unknown>);
  return { stream, lines };
}

describe('pinoHttpOptions', () => {
  let telemetry: TestTelemetry;
  beforeEach(() => {
    telemetry = installTestTelemetry();
  });
  afterEach(() => telemetry.uninstall());

  it('writes JSON lines with the active span’s trace and span ids', () => {
    const { stream, lines } = memoryStream();
    const { level, mixin, formatters, timestamp } = pinoHttpOptions({ logLevel: 'info' });
    const logger = pino({ level, mixin, formatters, timestamp }, stream);

    const span = trace.getTracer('test').startSpan('pipeline.generation');
    context.with(trace.setSpan(context.active(), span), () => logger.info('inside'));
    span.end();
    logger.info('outside');

    const [inside, outside] = lines();
    expect(inside).toMatchObject({
      msg: 'inside',
      level: 'info',
      trace_id: span.spanContext().traceId,
      span_id: span.spanContext().spanId,
      trace_flags: '01',
    });
    expect(typeof inside.time).toBe('string');
    expect(outside.msg).toBe('outside');
    expect(outside).not.toHaveProperty('trace_id');
  });

  it('omits the ids under a span context that is not valid, and marks an unsampled one 00', () => {
    const { stream, lines } = memoryStream();
    const { mixin } = pinoHttpOptions({ logLevel: 'info' });
    const logger = pino({ mixin }, stream);
    // OTEL_SDK_DISABLED: the no-op tracer's spans carry the invalid (all-zero) context.
    context.with(trace.setSpan(context.active(), trace.wrapSpanContext(INVALID_SPAN_CONTEXT)), () => logger.info('invalid'));
    // Without an OTLP endpoint (AlwaysOff sampler) spans are not sampled but have real ids.
    const unsampled = { traceId: '0af7651916cd43dd8448eb211c80319c', spanId: 'b7ad6b7169203331', traceFlags: TraceFlags.NONE };
    context.with(trace.setSpan(context.active(), trace.wrapSpanContext(unsampled)), () => logger.info('unsampled'));

    const [invalid, notSampled] = lines();
    for (const key of ['trace_id', 'span_id', 'trace_flags']) expect(invalid).not.toHaveProperty(key);
    expect(notSampled).toMatchObject({ trace_id: unsampled.traceId, span_id: unsampled.spanId, trace_flags: '00' });
  });

  describe('request logging', () => {
    let server: Server;
    let base: string;
    let output: ReturnType<typeof memoryStream>;

    beforeEach(async () => {
      output = memoryStream();
      const middleware = pinoHttp(pinoHttpOptions({ logLevel: 'info' }), output.stream);
      server = createServer((req, res) => {
        middleware(req, res);
        res.setHeader('set-cookie', 'session=secret-cookie');
        res.statusCode = req.url === '/boom' ? 500 : 200;
        req.resume();
        req.on('end', () => res.end('ok'));
      });
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
      base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    });
    afterEach(() => new Promise<void>((resolve) => server.close(() => resolve())));

    it('logs one line per request without the body and with credentials redacted', async () => {
      const res = await fetch(`${base}/api/v1/generations`, {
        method: 'POST',
        headers: {
          'x-api-key': 'secret-key',
          authorization: 'Bearer secret-token',
          cookie: 'session=secret-cookie',
          'content-type': 'application/json',
          'x-request-id': 'req-42',
        },
        body: JSON.stringify({ prompt: 'a secret prompt' }),
      });
      expect(res.status).toBe(200);
      expect(res.headers.get('x-request-id')).toBe('req-42');

      const raw = JSON.stringify(output.lines());
      for (const secret of ['secret-key', 'secret-token', 'secret-cookie', 'a secret prompt']) expect(raw).not.toContain(secret);
      const [line] = output.lines();
      expect(line).toMatchObject({
        level: 'info',
        msg: 'request completed',
        req: { id: 'req-42', method: 'POST', url: '/api/v1/generations', headers: { 'x-api-key': '[redacted]', authorization: '[redacted]' } },
        res: { statusCode: 200 },
      });
      expect(line.req).not.toHaveProperty('params');
      expect(line.res).toEqual({ statusCode: 200 });
      // No server span here, as in the service without an OTLP endpoint: the line has no trace
      // ids, and req.id is what ties a request's lines together.
      expect(line).not.toHaveProperty('trace_id');
    });

    it('logs server errors at error level, replaces an invalid request id, and skips probes', async () => {
      await fetch(`${base}/boom`, { headers: { 'x-request-id': 'bad id "} <script>' } });
      await fetch(`${base}/boom`, { headers: { 'x-request-id': 'x'.repeat(200) } });
      await fetch(`${base}/health/live`);
      await fetch(`${base}/metrics`);

      const lines = output.lines();
      expect(lines).toHaveLength(2);
      expect(lines.map((l) => l.level)).toEqual(['error', 'error']);
      for (const l of lines) expect((l.req as { id: string }).id).toMatch(/^[0-9a-f-]{36}$/);
    });
  });
});
