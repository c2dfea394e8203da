import { mkdtempSync, rmSync } from 'node:fs';
import { request as httpRequest, IncomingHttpHeaders } from 'node:http';
import { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { NestExpressApplication } from '@nestjs/platform-express';
import { createApp } from '../../src/app.factory';
import { loadConfig } from '../../src/config/app-config';
import { GenerationStreamService } from '../../src/generations/generation-stream.service';
import { startTestGemini, type TestGemini } from '../support/gemini-emulator';

const GENERATIONS = '/api/v1/generations';
/** A well-formed id no generation has. */
const UNKNOWN_ID = '01939d2a-0000-7000-8000-000000000000';

async function eventually<T>(check: () => T | undefined | Promise<T | undefined>, what: string, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

interface Stream {
  status: number;
  headers: IncomingHttpHeaders;
  /** The JSON error body of a refused stream. */
  error?: { statusCode: number; code: string; message: string };
  /** Resolves when the server ended the stream (or the connection closed). */
  ended: Promise<void>;
  /** The client hangs up, as a browser tab that is closed. */
  disconnect(): void;
}

/**
 * Opens `/events` of `id` on its own connection. A 200 resolves once the first event (the current
 * state) has arrived, so the server holds the stream's slot by then; any other status resolves
 * with its error body.
 */
function openStream(base: URL, id: string, headers: Record<string, string> = {}): Promise<Stream> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(new URL(`${GENERATIONS}/${id}/events`, base), { agent: false, headers }, (res) => {
      let text = '';
      const ended = new Promise<void>((done) => res.once('close', () => done()));
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        text += chunk;
        if (res.statusCode === 200 && text.includes('\n\n')) {
          resolve({ status: 200, headers: res.headers, ended, disconnect: () => req.destroy() });
        }
      });
      res.on('end', () => {
        if (res.statusCode !== 200) resolve({ status: res.statusCode!, headers: res.headers, error: JSON.parse(text), ended, disconnect: () => req.destroy() });
      });
    });
    req.on('error', reject);
    req.end();
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

/** Open streams are capped per client and in total; slots come back however a stream ends. */
describe('Event stream limits (e2e)', () => {
  const dirs: string[] = [];
  const apps: NestExpressApplication[] = [];
  const open: Stream[] = [];

  async function start(env: Record<string, string>): Promise<{ app: NestExpressApplication; base: URL; streams: GenerationStreamService }> {
    const dataDir = mkdtempSync(join(tmpdir(), 'his-sse-limits-'));
    dirs.push(dataDir);
    const config = loadConfig({ ...testGemini.env, DATA_DIR: dataDir, METRICS_PORT: '0', OTEL_SDK_DISABLED: 'true', LOG_LEVEL: 'silent', PALETTE_WORKERS: '1', ...env });
    const app = await createApp(config, { logger: false });
    apps.push(app);
    await app.listen(0, '127.0.0.1');
    const { port } = app.getHttpServer().address() as AddressInfo;
    return { app, base: new URL(`http://127.0.0.1:${port}`), streams: app.get(GenerationStreamService) };
  }

  /** A generation that stays running (its Gemini call hangs) until canceled. */
  async function runningGeneration(base: URL, headers: Record<string, string> = {}): Promise<string> {
    const res = await fetch(new URL(GENERATIONS, base), {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...headers },
      body: JSON.stringify({ prompt: 'a long wait [emulator:hang]' }),
    });
    expect(res.status).toBe(202);
    return ((await res.json()) as { id: string }).id;
  }

  const cancel = (base: URL, id: string, headers: Record<string, string> = {}) =>
    fetch(new URL(`${GENERATIONS}/${id}/cancel`, base), { method: 'POST', headers }).then((r) => r.status);

  async function stream(base: URL, id: string, headers: Record<string, string> = {}): Promise<Stream> {
    const s = await openStream(base, id, headers);
    if (s.status === 200) open.push(s);
    return s;
  }

  const expectTooMany = (s: Stream, what: RegExp) => {
    expect(s.status).toBe(429);
    expect(s.error).toEqual({ statusCode: 429, code: 'TOO_MANY_STREAMS', message: expect.stringMatching(what) });
    expect(Number(s.headers['retry-after'])).toBeGreaterThanOrEqual(1);
  };

  afterAll(async () => {
    for (const s of open) s.disconnect();
    for (const app of apps) await app.close();
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  });

  describe('per client address (no API keys), cap 2', () => {
    let base: URL;
    let streams: GenerationStreamService;
    let id: string;
    beforeAll(async () => {
      ({ base, streams } = await start({ SSE_MAX_STREAMS_PER_CLIENT: '2', SSE_MAX_STREAMS: '100', GEMINI_TIMEOUT_MS: '600000' }));
      id = await runningGeneration(base);
    });
    afterAll(async () => {
      await cancel(base, id);
      await eventually(() => (streams.openStreams() === 0 ? true : undefined), 'every stream to end after the cancel');
    });

    /** This client's (127.0.0.1) open streams. */
    const mine: Stream[] = [];

    it('the third concurrent stream of one client → 429 TOO_MANY_STREAMS; another client is not affected', async () => {
      mine.push(await stream(base, id), await stream(base, id));
      expect(mine.map((s) => s.status)).toEqual([200, 200]);
      expectTooMany(await stream(base, id), /client already has 2 open event streams \(at most 2\)/);
      // The service trusts X-Forwarded-For from loopback (a local proxy): another address, its own slots.
      const other = await stream(base, id, { 'x-forwarded-for': '203.0.113.7' });
      expect(other.status).toBe(200);
      expect(streams.openStreams()).toBe(3);
    });

    it('a client that hangs up frees its slot: no leak', async () => {
      mine.shift()!.disconnect();
      await eventually(() => (streams.openStreams() === 2 ? true : undefined), 'the server to release the slot');
      const again = await stream(base, id);
      expect(again.status).toBe(200);
      mine.push(again);
      expectTooMany(await stream(base, id), /at most 2/);
    });

    it('refused lookups (404) and streams of finished generations give their slot back at once', async () => {
      // Leave this client one free slot, then use it many times over.
      mine.shift()!.disconnect();
      await eventually(() => (streams.openStreams() === 2 ? true : undefined), 'the server to release the slot');
      for (let i = 0; i < 5; i++) {
        const missing = await openStream(base, UNKNOWN_ID);
        expect(missing.status).toBe(404);
        expect(missing.error?.code).toBe('GENERATION_NOT_FOUND');
      }
      const done = await runningGeneration(base);
      expect(await cancel(base, done)).toBe(200);
      for (let i = 0; i < 5; i++) {
        const finished = await openStream(base, done);
        expect(finished.status).toBe(200);
        await finished.ended; // the final state, then the server closes the stream
      }
      expect(streams.openStreams()).toBe(2);
      expect((await stream(base, id)).status).toBe(200);
    });

    it('the end of the generation ends its streams and frees every slot', async () => {
      expect(await cancel(base, id)).toBe(200);
      await Promise.all(open.map((s) => s.ended));
      await eventually(() => (streams.openStreams() === 0 ? true : undefined), 'every slot to be free');
      open.length = 0;
    });
  });

  describe('per API key and in total (keys configured): 2 per key, 3 in all', () => {
    const A = { 'x-api-key': 'key-a-123456' };
    const B = { authorization: 'Bearer key-b-654321' };
    let base: URL;
    let streams: GenerationStreamService;
    let idA: string;
    let idB: string;
    beforeAll(async () => {
      ({ base, streams } = await start({
        API_KEYS: 'key-a-123456,key-b-654321',
        SSE_MAX_STREAMS_PER_CLIENT: '2',
        SSE_MAX_STREAMS: '3',
        GEMINI_TIMEOUT_MS: '600000',
      }));
      idA = await runningGeneration(base, A);
      idB = await runningGeneration(base, B);
    });
    afterAll(async () => {
      await cancel(base, idA, A);
      await cancel(base, idB, B);
      await eventually(() => (streams.openStreams() === 0 ? true : undefined), 'every stream to end after the cancel');
    });

    it('counts per key, not per address, and caps the total', async () => {
      expect((await stream(base, idA, A)).status).toBe(200);
      expect((await stream(base, idA, A)).status).toBe(200);
      expectTooMany(await stream(base, idA, A), /client already has 2 open event streams/);
      // Same address, other key: its own per-key slots, but only one left in total.
      expect((await stream(base, idB, B)).status).toBe(200);
      expectTooMany(await stream(base, idB, B), /service has 3 open event streams \(at most 3\)/);
      // A different address does not help either: the total is the total.
      expectTooMany(await stream(base, idB, { ...B, 'x-forwarded-for': '198.51.100.1' }), /at most 3/);
    });

    it('closing one stream frees a slot in the total', async () => {
      open[0].disconnect();
      await eventually(() => (streams.openStreams() === 2 ? true : undefined), 'the server to release the slot');
      expect((await stream(base, idB, B)).status).toBe(200);
      expectTooMany(await stream(base, idA, A), /at most 3/);
    });

    it('an unknown key gets 401 before any slot is taken', async () => {
      const res = await openStream(base, idA, { 'x-api-key': 'not-a-key' });
      expect(res.status).toBe(401);
      expect(streams.openStreams()).toBe(3);
    });
  });
});
