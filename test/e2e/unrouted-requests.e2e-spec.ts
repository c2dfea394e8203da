/**
 * Requests that match no route of the API are recorded in http.server.request.duration without
 * `http.route` (the HTTP semantic conventions omit it when there is no route), not under the
 * catch-all `{/*splat}` that nestjs-pino's middleware mount leaves on them; a 404 answered by a
 * handler keeps its route. The real app, with the middleware that records the histogram when no
 * spans are exported (the OTLP path is covered by test/integration/telemetry-faults.int-spec.ts).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { NestExpressApplication } from '@nestjs/platform-express';
import type { Histogram } from '@opentelemetry/sdk-metrics';
import request from 'supertest';
import { createApp } from '../../src/app.factory';
import { loadConfig } from '../../src/config/app-config';
import { metricViews } from '../../src/telemetry/metric-views';
import { installTestTelemetry, TestTelemetry } from '../../src/telemetry/testing';
import { startTestGemini, type TestGemini } from '../support/gemini-emulator';

describe('http.route of unrouted requests (e2e)', () => {
  let telemetry: TestTelemetry;
  let app: NestExpressApplication;
  let dataDir: string;
  let gemini: TestGemini;

  beforeAll(async () => {
    telemetry = installTestTelemetry({ views: metricViews() });
    gemini = await startTestGemini();
    dataDir = mkdtempSync(join(tmpdir(), 'his-unrouted-'));
    // Telemetry on, no OTLP endpoint: httpServerDurationMiddleware records the histogram.
    const config = loadConfig({ DATA_DIR: dataDir, METRICS_PORT: '0', LOG_LEVEL: 'silent', PALETTE_WORKERS: '1', ...gemini.env });
    app = await createApp(config, { logger: false });
    await app.init();
  });

  afterAll(async () => {
    await app?.close();
    await gemini?.close();
    await telemetry?.uninstall();
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('omits http.route for paths no route matched, and keeps it for a handler’s 404', async () => {
    const http = request(app.getHttpServer());
    await http.get('/nope').expect(404);
    await http.get('/api/v1/nope/deeper').expect(404);
    await http.get('/api/v1/generations/gen_unknown').expect(404);

    let points: { route: unknown; status: unknown; count: number }[] = [];
    for (let i = 0; i < 50 && points.reduce((n, p) => n + p.count, 0) < 3; i++) {
      if (i > 0) await new Promise((r) => setTimeout(r, 20));
      points = (await telemetry.points('http.server.request.duration')).map((p) => ({
        route: p.attributes['http.route'],
        status: p.attributes['http.response.status_code'],
        count: (p.value as Histogram).count,
      }));
    }
    expect(points).toEqual(
      expect.arrayContaining([
        { route: undefined, status: 404, count: 2 },
        { route: '/api/v1/generations/:id', status: 404, count: 1 },
      ]),
    );
    expect(points).toHaveLength(2);
  });
});
