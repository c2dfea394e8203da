/**
 * Telemetry that fails says so in the service log, without OTEL_LOG_LEVEL: OpenTelemetry's diag
 * messages and export errors are JSON lines with `context: "OpenTelemetry"` (warn and above).
 * - an OTLP backend answering 401 (a wrong token) or 404 (a wrong path): one line per failed export,
 *   for spans and for metrics;
 * - METRICS_PORT already taken: the service runs on without its metrics endpoint, and says so.
 */
import { createServer, Server } from 'node:net';
import { startOtlpReceiver, OtlpReceiver } from '../support/otlp-receiver';
import { freePort, ServiceProcess, startService } from '../support/service-process';

async function eventually<T>(check: () => T | undefined, what: string, timeoutMs = 20_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const otelLines = (service: ServiceProcess) => service.jsonLogs().filter((l) => l.context === 'OpenTelemetry');

describe('Telemetry failures reach the service log (integration)', () => {
  let receiver: OtlpReceiver | undefined;
  let service: ServiceProcess | undefined;
  let blocker: Server | undefined;

  afterEach(async () => {
    await service?.stop();
    await receiver?.close();
    await new Promise<void>((done) => (blocker ? blocker.close(() => done()) : done()));
    service = undefined;
    receiver = undefined;
    blocker = undefined;
  });

  it.each([
    [401, 'Unauthorized'],
    [404, 'Not Found'],
  ])('OTLP exports answered %i: an error line for spans and one for metrics', async (status, statusText) => {
    receiver = await startOtlpReceiver({ status });
    const s = (service = await startService({
      OTEL_EXPORTER_OTLP_ENDPOINT: receiver.endpoint,
      OTEL_BSP_SCHEDULE_DELAY: '100',
      OTEL_METRIC_EXPORT_INTERVAL: '500',
    }));
    expect((await fetch(`${s.baseUrl}/api/v1/generations?limit=1`)).status).toBe(200);

    const spans = await eventually(
      () => otelLines(s).find((l) => l.level === 'error' && String(l.msg).startsWith(`OTLPExporterError: ${statusText} (HTTP ${status})`)),
      'the failed span export in the log',
    );
    expect(spans.msg).toBe(`OTLPExporterError: ${statusText} (HTTP ${status}): test receiver answers ${status}`);
    await eventually(
      () => otelLines(s).find((l) => l.level === 'error' && String(l.msg).includes(`metrics export failed (error OTLPExporterError: ${statusText})`)),
      'the failed metric export in the log',
    );
    expect(receiver.exports().every((e) => e.status === status)).toBe(true);
  }, 60_000);

  it('METRICS_PORT already taken: an error line, and the API keeps serving', async () => {
    const port = await freePort();
    blocker = createServer();
    await new Promise<void>((done) => blocker!.listen(port, '0.0.0.0', done));
    const s = (service = await startService({ METRICS_PORT: String(port) }));

    const line = await eventually(() => otelLines(s).find((l) => l.level === 'error' && String(l.msg).startsWith('Prometheus metrics endpoint')), 'the listen failure');
    expect(line.msg).toBe(
      `Prometheus metrics endpoint http://0.0.0.0:${port}/metrics could not start (listen EADDRINUSE: address already in use 0.0.0.0:${port}): no metrics are served there`,
    );
    expect((await fetch(`${s.baseUrl}/health/live`)).status).toBe(200);
    expect((await fetch(`${s.baseUrl}/api/v1/generations?limit=1`)).status).toBe(200);
  }, 60_000);
});
