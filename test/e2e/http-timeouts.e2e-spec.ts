import { mkdtempSync, rmSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { AddressInfo, connect, Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { NestExpressApplication } from '@nestjs/platform-express';
import { createApp } from '../../src/app.factory';
import { loadConfig } from '../../src/config/app-config';
import { startTestGemini, type TestGemini } from '../support/gemini-emulator';

const GENERATIONS = '/api/v1/generations';

/** Everything the server sends on a raw connection until it closes it. */
function untilClosed(socket: Socket): Promise<string> {
  return new Promise((resolve, reject) => {
    let received = '';
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => (received += chunk));
    socket.on('error', reject);
    socket.on('close', () => resolve(received));
  });
}

/** The bundled Gemini emulator, reached by this file's apps through GEMINI_BASE_URL. */
let testGemini: TestGemini;
beforeAll(async () => {
  testGemini = await startTestGemini();
});
afterAll(async () => {
  await testGemini?.close();
});

/**
 * The HTTP server's own timeouts, driven by small configured values: a request whose headers or
 * body never finish arriving is answered 408 and its connection closed (Node's default would hold
 * it for 300 s), an idle keep-alive connection is closed, and none of this cuts a long response
 * such as an event stream.
 */
describe('HTTP server timeouts (e2e)', () => {
  const REQUEST_TIMEOUT_MS = 300;
  /** Whole seconds, so the advertised `Keep-Alive: timeout=` shows it (Node's default is 5 s). */
  const KEEP_ALIVE_TIMEOUT_MS = 1_000;
  let app: NestExpressApplication;
  let dataDir: string;
  let port: number;
  const sockets: Socket[] = [];

  beforeAll(async () => {
    dataDir = mkdtempSync(join(tmpdir(), 'his-http-timeouts-'));
    const config = loadConfig({
      ...testGemini.env,
      DATA_DIR: dataDir,
      METRICS_PORT: '0',
      OTEL_SDK_DISABLED: 'true',
      LOG_LEVEL: 'silent',
      PALETTE_WORKERS: '1',
      GEMINI_TIMEOUT_MS: '600000',
      HTTP_REQUEST_TIMEOUT_MS: String(REQUEST_TIMEOUT_MS),
      HTTP_KEEP_ALIVE_TIMEOUT_MS: String(KEEP_ALIVE_TIMEOUT_MS),
    });
    app = await createApp(config, { logger: false });
    await app.listen(0, '127.0.0.1');
    port = (app.getHttpServer().address() as AddressInfo).port;
  });

  afterAll(async () => {
    for (const socket of sockets) socket.destroy();
    await app?.close();
    rmSync(dataDir, { recursive: true, force: true });
  });

  const rawConnection = async () => {
    const socket = connect(port, '127.0.0.1');
    sockets.push(socket);
    await new Promise<void>((resolve) => socket.once('connect', resolve));
    return socket;
  };

  it('a body that never finishes arriving → 408 and the connection is closed', async () => {
    const socket = await rawConnection();
    const closed = untilClosed(socket);
    const body = JSON.stringify({ prompt: 'a slow upload' });
    socket.write(`POST ${GENERATIONS} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: ${body.length + 100}\r\n\r\n`);
    socket.write(body); // 100 bytes short, and nothing more ever comes
    expect(await closed).toMatch(/^HTTP\/1\.1 408 Request Timeout\r\n/);
    const list = await fetch(`http://127.0.0.1:${port}${GENERATIONS}`);
    expect(((await list.json()) as { items: unknown[] }).items).toEqual([]);
  });

  it('headers that never finish arriving → 408 and the connection is closed', async () => {
    const socket = await rawConnection();
    const closed = untilClosed(socket);
    socket.write(`GET ${GENERATIONS} HTTP/1.1\r\nHost: localhost\r\nX-Slow: `);
    expect(await closed).toMatch(/^HTTP\/1\.1 408 Request Timeout\r\n/);
  });

  it('an idle keep-alive connection is closed by the server', async () => {
    const socket = await rawConnection();
    const closed = untilClosed(socket);
    socket.write('GET /health/live HTTP/1.1\r\nHost: localhost\r\nConnection: keep-alive\r\n\r\n');
    // Answered, kept open with the configured timeout advertised, then closed once idle (Node
    // waits a 1 s buffer beyond what it advertises).
    const answer = await closed;
    expect(answer).toMatch(/^HTTP\/1\.1 200 OK\r\n/);
    expect(answer).toMatch(/\r\nKeep-Alive: timeout=1\r\n/i);
  });

  it('a request sent at normal speed is unaffected', async () => {
    const res = await fetch(`http://127.0.0.1:${port}${GENERATIONS}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ prompt: 'a quick sketch' }),
    });
    expect(res.status).toBe(202);
    const { id } = (await res.json()) as { id: string };
    await fetch(`http://127.0.0.1:${port}${GENERATIONS}/${id}/cancel`, { method: 'POST' });
  });

  it('an event stream outlives the request timeout many times over and ends normally', async () => {
    const created = await fetch(`http://127.0.0.1:${port}${GENERATIONS}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ prompt: 'a long wait [emulator:hang]' }),
    });
    const { id } = (await created.json()) as { id: string };
    let text = '';
    let ended = false;
    const stream = new Promise<void>((resolve, reject) => {
      const req = httpRequest(`http://127.0.0.1:${port}${GENERATIONS}/${id}/events`, { agent: false }, (res) => {
        expect(res.statusCode).toBe(200);
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => (text += chunk));
        res.on('end', () => {
          ended = true;
          resolve();
        });
      });
      req.on('error', reject);
      req.end();
    });
    // Ten request timeouts (and some forty of Node's timeout checks) with the stream open.
    await new Promise((r) => setTimeout(r, 10 * REQUEST_TIMEOUT_MS));
    expect(ended).toBe(false);
    expect(text).toMatch(/^event: generation\n/);

    await fetch(`http://127.0.0.1:${port}${GENERATIONS}/${id}/cancel`, { method: 'POST' });
    await stream;
    expect(text).toContain('"status":"canceled"');
  });
});
