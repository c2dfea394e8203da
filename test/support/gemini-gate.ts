import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { startGeminiEmulator, type GeminiEmulator } from '../../src/gemini/emulator/emulator.server';

/**
 * A Gemini endpoint whose answers the test lets through one at a time: requests wait at the gate
 * until `release()`, then go on to the bundled emulator and its answer comes back. Point the
 * service at `url` (GEMINI_BASE_URL). It lets a test hold a generation in its Gemini stage for as
 * long as it needs, and decide exactly when it moves on (upload, palette, final write), without
 * racing a timeout.
 */
export interface GeminiGate {
  readonly url: string;
  /** Requests waiting at the gate. */
  waiting(): number;
  /** Resolves once at least `n` requests wait. */
  untilWaiting(n: number, timeoutMs?: number): Promise<void>;
  /** Lets the oldest waiting request through (throws when none waits). */
  release(): void;
  releaseAll(): void;
  close(): Promise<void>;
}

async function readAll(req: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

export async function startGeminiGate(): Promise<GeminiGate> {
  const emulator: GeminiEmulator = await startGeminiEmulator();
  const queue: (() => void)[] = [];
  const server: Server = createServer((req, res) => {
    void (async () => {
      const body = await readAll(req);
      let gone = false;
      await new Promise<void>((resolve) => {
        const pass = () => {
          res.off('close', leave);
          resolve();
        };
        // The client gave up (timeout, cancel): it no longer waits at the gate.
        const leave = () => {
          gone = true;
          const at = queue.indexOf(pass);
          if (at >= 0) queue.splice(at, 1);
          resolve();
        };
        res.once('close', leave);
        queue.push(pass);
      });
      if (gone) return;
      const upstream = await fetch(`${emulator.url}${req.url ?? '/'}`, {
        method: req.method,
        headers: { 'content-type': String(req.headers['content-type'] ?? 'application/json'), 'x-goog-api-key': String(req.headers['x-goog-api-key'] ?? '') },
        body,
      });
      res.writeHead(upstream.status, { 'content-type': upstream.headers.get('content-type') ?? 'application/json' });
      res.end(Buffer.from(await upstream.arrayBuffer()));
    })().catch((error: unknown) => {
      if (!res.headersSent) res.writeHead(502);
      res.end(String(error));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;

  return {
    url: `http://127.0.0.1:${port}`,
    waiting: () => queue.length,
    async untilWaiting(n, timeoutMs = 60_000) {
      const deadline = Date.now() + timeoutMs;
      while (queue.length < n) {
        if (Date.now() > deadline) throw new Error(`timed out waiting for ${n} Gemini request(s) at the gate (${queue.length} there)`);
        await new Promise((r) => setTimeout(r, 10));
      }
    },
    release() {
      const next = queue.shift();
      if (!next) throw new Error('no Gemini request waits at the gate');
      next();
    },
    releaseAll() {
      for (const next of queue.splice(0)) next();
    },
    async close() {
      // Waiting requests see their connection close and leave the queue.
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await emulator.close();
    },
  };
}
