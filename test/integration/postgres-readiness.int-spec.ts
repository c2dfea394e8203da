import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Logger } from '@nestjs/common';
import type { NestExpressApplication } from '@nestjs/platform-express';
import request from 'supertest';
import { createApp } from '../../src/app.factory';
import { loadConfig } from '../../src/config/app-config';
import { DATABASE_CHECK_TIMEOUT_MS } from '../../src/health/indicators';
import { createTestDatabase, TestDatabase } from '../support/postgres';
import { startTcpProxy, TcpProxy } from '../support/tcp-proxy';
import { startTestGemini, type TestGemini } from '../support/gemini-emulator';

type Body = Record<string, any>;

/** The bundled Gemini emulator, reached by this file's apps through GEMINI_BASE_URL. */
let testGemini: TestGemini;
beforeAll(async () => {
  testGemini = await startTestGemini();
});
afterAll(async () => {
  await testGemini?.close();
});

/**
 * Readiness with PostgreSQL out of reach. The real app talks to its own database through a TCP
 * proxy, so the test can make the server hang, refuse or come back for this app alone without
 * touching the server other tests share.
 */
describe('readiness when PostgreSQL is unreachable', () => {
  let testDb: TestDatabase;
  let proxy: TcpProxy;
  let dataDir: string;
  let app: NestExpressApplication;
  let http: ReturnType<typeof request>;
  let warn: jest.SpyInstance;

  beforeAll(async () => {
    testDb = await createTestDatabase();
    const target = new URL(testDb.url);
    proxy = await startTcpProxy({ host: target.hostname, port: Number(target.port || 5432) });
    dataDir = mkdtempSync(join(tmpdir(), 'his-pg-ready-'));
    warn = jest.spyOn(Logger.prototype, 'warn');
    const config = loadConfig({
      ...testGemini.env,
      DATA_DIR: dataDir,
      DATABASE_URL: proxy.via(testDb.url),
      // Far longer than the readiness bound: the check must not wait for the pool.
      DATABASE_CONNECT_TIMEOUT_MS: '120000',
      METRICS_PORT: '0',
      OTEL_SDK_DISABLED: 'true',
      LOG_LEVEL: 'silent',
      PALETTE_WORKERS: '1',
    });
    app = await createApp(config, { logger: false });
    await app.init();
    http = request(app.getHttpServer());
  });

  afterAll(async () => {
    if (proxy) proxy.mode = 'refuse';
    proxy?.cutAll();
    await app?.close();
    await proxy?.close();
    await testDb?.drop();
    warn?.mockRestore();
    if (dataDir) rmSync(dataDir, { recursive: true, force: true });
  });

  const ready = async () => {
    const started = Date.now();
    const res = await http.get('/health/ready');
    return { status: res.status, body: res.body as Body, ms: Date.now() - started };
  };

  it('is ready on PostgreSQL', async () => {
    const { status, body } = await ready();
    expect(status).toBe(200);
    expect(body.details.database).toEqual({ status: 'up' });
  });

  it('answers 503 within the check bound when the server hangs, while liveness stays 200', async () => {
    proxy.mode = 'hang';
    // The pool's open connections die too (an idle client's error is logged, not thrown).
    proxy.cutAll();
    const { status, body, ms } = await ready();
    expect(status).toBe(503);
    // A fixed text: the driver's detail (host, port, errno) goes to the log only.
    expect(body.details.database).toEqual({ status: 'down', message: 'The database did not answer' });
    expect(ms).toBeGreaterThanOrEqual(DATABASE_CHECK_TIMEOUT_MS - 50);
    // Generous: the pool alone would have waited its 120 s connect timeout.
    expect(ms).toBeLessThan(30_000);
    await http.get('/health/live').expect(200);
  });

  it('answers 503 when connections are refused, without the driver\'s detail, while liveness stays 200', async () => {
    proxy.mode = 'refuse';
    proxy.cutAll();
    const { status, body } = await ready();
    expect(status).toBe(503);
    expect(body.details.database.status).toBe('down');
    // The refusal is typed at the driver boundary: the service's code and fixed text, no driver detail.
    expect(body.details.database).toEqual({
      status: 'down',
      code: 'DATABASE_UNAVAILABLE',
      message: 'The database cannot be reached right now; retry shortly',
    });
    expect(JSON.stringify(body)).not.toMatch(/ECONNREFUSED|ECONNRESET|127\.0\.0\.1|:\d{4,5}\b/);
    await http.get('/health/live').expect(200);
  });

  it('is ready again once the server is back, on the same pool', async () => {
    proxy.mode = 'forward';
    const { status, body } = await ready();
    expect(status).toBe(200);
    expect(body.details.database).toEqual({ status: 'up' });
    expect(warn.mock.calls.map((c) => String(c[0]))).toEqual(
      expect.arrayContaining([expect.stringMatching(/PostgreSQL connection lost while idle/)]),
    );
  });
});
