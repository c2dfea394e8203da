/**
 * What the service reveals, checked on the built service running as its own process (real
 * socket, real JSON logs, real OTLP span export) and, for S3, on the in-process app:
 * - it listens on `HOST` only;
 * - a storage failure leaves a fixed message in the record, readiness and HTTP answers, never
 *   an absolute path, endpoint or bucket; that detail is in the server log;
 * - a key sent in the query string (`?api_key=…`) reaches neither the log nor an exported span.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { NestExpressApplication } from '@nestjs/platform-express';
import request from 'supertest';
import { createApp } from '../../src/app.factory';
import { loadConfig } from '../../src/config/app-config';
import { OtlpReceiver, startOtlpReceiver } from '../support/otlp-receiver';
import { useS3rverCredentials } from '../support/s3rver';
import { freePort, ServiceProcess, startService } from '../support/service-process';
import { startTestGemini, type TestGemini } from '../support/gemini-emulator';
import { listeningAddresses } from '../support/listening';

const GENERATIONS = '/api/v1/generations';
const STORED_MESSAGE = 'The image could not be stored';
/** Anything that looks like an absolute file path. */
const ABSOLUTE_PATH = /(?:^|[\s'"(=])\/(?:[\w.-]+\/)+/;

async function eventually<T>(check: () => T | undefined | Promise<T | undefined>, what: string, timeoutMs = 15_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** The bundled Gemini emulator, reached by this file's apps through GEMINI_BASE_URL. */
let testGemini: TestGemini;
beforeAll(async () => {
  testGemini = await startTestGemini();
});
afterAll(async () => {
  await testGemini?.close();
});

describe('What the service reveals: the built service (integration)', () => {
  let receiver: OtlpReceiver;
  let service: ServiceProcess;
  let dataDir: string;

  beforeAll(async () => {
    receiver = await startOtlpReceiver();
    dataDir = mkdtempSync(join(tmpdir(), 'his-reveals-'));
    // A file where the images folder should be: every upload fails (ENOTDIR, with the full path).
    writeFileSync(join(dataDir, 'images'), 'not a folder');
    service = await startService({
      DATA_DIR: dataDir,
      HOST: '127.0.0.1',
      OTEL_EXPORTER_OTLP_ENDPOINT: receiver.endpoint,
      PALETTE_WORKERS: '1',
    });
  }, 60_000);

  afterAll(async () => {
    await service?.stop();
    await receiver?.close();
    rmSync(dataDir, { recursive: true, force: true });
  });

  const logText = () => service.logs();

  it('listens on HOST (127.0.0.1) only, and says so', async () => {
    expect(listeningAddresses(service.port)).toEqual([`127.0.0.1:${service.port}`]);
    const started = await eventually(
      () => service.jsonLogs().find((l) => String(l.msg).startsWith('API listening on')),
      'the start-up line',
    );
    expect(started.msg).toBe(`API listening on http://127.0.0.1:${service.port} (docs at /docs)`);
  });

  it('a storage failure: the record says a fixed text without any path; the log has the detail', async () => {
    const res = await fetch(`${service.baseUrl}${GENERATIONS}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', prefer: 'wait=30' },
      body: JSON.stringify({ prompt: 'a picture with nowhere to go' }),
    });
    expect(res.status).toBe(201);
    const failed = (await res.json()) as { id: string; status: string; error: { code: string; message: string } };
    expect(failed).toMatchObject({ status: 'failed', error: { code: 'STORAGE_ERROR', message: STORED_MESSAGE } });

    for (const body of [failed, await (await fetch(`${service.baseUrl}${GENERATIONS}/${failed.id}`)).json()]) {
      const text = JSON.stringify(body);
      expect(text).not.toContain(dataDir);
      expect((body as typeof failed).error.message).not.toMatch(ABSOLUTE_PATH);
    }
    // Operators still learn what happened, and where.
    const detail = await eventually(
      () => service.jsonLogs().find((l) => l.level === 'warn' && String(l.msg).includes('storage put failed (local)')),
      'the storage failure in the log',
    );
    expect(String(detail.msg)).toContain(dataDir);
    expect(String(detail.msg)).toMatch(/ENOTDIR|EEXIST/);
  });

  it('a key sent as ?api_key= is neither logged nor exported in a span', async () => {
    const secrets = ['qs-secret-one-1234', 'qs-secret-two-5678'];
    expect((await fetch(`${service.baseUrl}${GENERATIONS}?limit=1&api_key=${secrets[0]}`)).status).toBe(400);
    expect((await fetch(`${service.baseUrl}${GENERATIONS}/not-an-id?Access_Token=${secrets[1]}`)).status).toBe(404);

    const lines = await eventually(() => {
      const found = service.jsonLogs().filter((l) => l.msg === 'request completed' && String((l.req as { url?: string })?.url).includes('[redacted]'));
      return found.length === 2 ? found : undefined;
    }, 'both request lines');
    expect(lines.map((l) => (l.req as { url: string }).url)).toEqual([
      `${GENERATIONS}?limit=1&api_key=[redacted]`,
      `${GENERATIONS}/not-an-id?Access_Token=[redacted]`,
    ]);

    const serverSpans = () => receiver.spans().filter((s) => s.kind === 2 && typeof s.attributes['url.query'] === 'string');
    await receiver.waitFor(() => serverSpans().length >= 2, 15_000, () => `spans: ${receiver.spans().map((s) => s.name).join(', ')}`);
    expect(serverSpans().map((s) => s.attributes['url.query']).sort()).toEqual(['Access_Token=[redacted]', 'limit=1&api_key=[redacted]']);

    const everything = logText() + JSON.stringify(receiver.spans());
    for (const secret of secrets) expect(everything).not.toContain(secret);
  });
});

describe('What the service reveals: S3 failures (integration)', () => {
  const BUCKET = 'internal-bucket-name';
  let app: NestExpressApplication;
  let dataDir: string;
  let endpoint: string;

  beforeAll(async () => {
    useS3rverCredentials();
    dataDir = mkdtempSync(join(tmpdir(), 'his-reveals-s3-'));
    // Nothing listens there: every S3 call fails with ECONNREFUSED and the endpoint in its message.
    endpoint = `http://127.0.0.1:${await freePort()}`;
    const config = loadConfig({
      ...testGemini.env,
      DATA_DIR: dataDir,
      METRICS_PORT: '0',
      OTEL_SDK_DISABLED: 'true',
      LOG_LEVEL: 'silent',
      PALETTE_WORKERS: '1',
      S3_BUCKET: BUCKET,
      S3_ENDPOINT: endpoint,
      S3_FORCE_PATH_STYLE: 'true',
    });
    app = await createApp(config, { logger: false });
    await app.init();
  });

  afterAll(async () => {
    await app?.close();
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('the record, readiness and the answers name neither the endpoint nor the bucket', async () => {
    const http = request(app.getHttpServer());
    const failed = (await http.post(GENERATIONS).set('Prefer', 'wait=30').send({ prompt: 'a cloud with no sky' }).expect(201)).body;
    expect(failed).toMatchObject({ status: 'failed', error: { code: 'STORAGE_ERROR', message: STORED_MESSAGE } });

    const ready = await http.get('/health/ready').expect(503);
    expect(ready.body.details.storage).toEqual({ status: 'down', driver: 's3', message: 'Storage is not reachable or not writable' });

    const hostPort = new URL(endpoint).host;
    for (const text of [JSON.stringify(failed), JSON.stringify(ready.body)]) {
      expect(text).not.toContain(hostPort);
      expect(text).not.toContain(BUCKET);
      expect(text).not.toMatch(/ECONNREFUSED|S3RVER/);
    }
  });
});
