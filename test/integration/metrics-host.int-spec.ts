/**
 * METRICS_HOST: the Prometheus endpoint listens on every IPv4 interface by default, so a Prometheus
 * in another container or on another host can scrape it (the exporter's own default is `localhost`),
 * and on the interface given otherwise. Checked on the built service's real socket, from
 * /proc/net/tcp, and by scraping it.
 */
import { listeningAddresses } from '../support/listening';
import { ServiceProcess, startService } from '../support/service-process';

describe('METRICS_HOST (integration)', () => {
  let service: ServiceProcess | undefined;
  afterEach(async () => {
    await service?.stop();
    service = undefined;
  });

  const metricsLine = (s: ServiceProcess) => s.jsonLogs().find((l) => l.context === 'OpenTelemetry' && String(l.msg).startsWith('Prometheus metrics at'));

  it('is all IPv4 interfaces (0.0.0.0) by default, and the start-up log says where', async () => {
    service = await startService();
    const s = service;
    await waitFor(() => listeningAddresses(s.metricsPort).length > 0);
    expect(listeningAddresses(s.metricsPort)).toEqual([`0.0.0.0:${s.metricsPort}`]);
    expect((await fetch(s.metricsUrl!)).status).toBe(200);
    await waitFor(() => metricsLine(s) !== undefined);
    expect(metricsLine(s)?.msg).toBe(`Prometheus metrics at http://0.0.0.0:${s.metricsPort}/metrics`);
  }, 60_000);

  it('is the interface given (127.0.0.1: this host only)', async () => {
    service = await startService({ METRICS_HOST: '127.0.0.1' });
    const s = service;
    await waitFor(() => listeningAddresses(s.metricsPort).length > 0);
    expect(listeningAddresses(s.metricsPort)).toEqual([`127.0.0.1:${s.metricsPort}`]);
    expect((await fetch(s.metricsUrl!)).status).toBe(200);
  }, 60_000);
});

/** The exporter's server starts listening asynchronously, shortly after the SDK. */
async function waitFor(check: () => boolean, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 50));
  }
}
