import { GeminiEmulator, startGeminiEmulator, type EmulatorStats } from './emulator.server';

const MODEL_PATH = '/v1/models/gemini-2.5-flash-image:generateContent';

/** Status of a call, its body read so that the connection is free again (see `status`). */
async function generate(emulator: GeminiEmulator, prompt: string, signal?: AbortSignal): Promise<number> {
  return status(fetch(`${emulator.url}${MODEL_PATH}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-goog-api-key': 'k' },
    body: JSON.stringify({ contents: [{ parts: [{ text: prompt }] }], generationConfig: { responseModalities: ['IMAGE'] } }),
    signal,
  }));
}

/**
 * Reads the whole body: a response left unread keeps its connection busy in the process-wide fetch
 * pool, and when close() then cuts that connection, undici opens a new one in its place that
 * outlives the test and keeps Jest's worker from exiting.
 */
async function status(response: Promise<Response>): Promise<number> {
  const res = await response;
  await res.arrayBuffer();
  return res.status;
}

async function readStats(emulator: GeminiEmulator): Promise<{ status: number; contentType: string | null; body: EmulatorStats }> {
  const res = await fetch(`${emulator.url}/stats`);
  return { status: res.status, contentType: res.headers.get('content-type'), body: (await res.json()) as EmulatorStats };
}

async function until(check: () => Promise<boolean>, what: string): Promise<void> {
  const giveUp = Date.now() + 10_000;
  while (!(await check())) {
    if (Date.now() > giveUp) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/** `GET /stats`: what a load harness reads from an emulator running as its own process. */
describe('Gemini emulator GET /stats', () => {
  let emulator: GeminiEmulator;
  beforeEach(async () => {
    emulator = await startGeminiEmulator();
  });
  afterEach(() => emulator.close());

  it('serves the same counters as stats(), calls in flight and the most at once included', async () => {
    const fresh = await readStats(emulator);
    expect(fresh.status).toBe(200);
    expect(fresh.contentType).toMatch(/^application\/json/);
    expect(fresh.body).toMatchObject({ requests: 0, inFlight: 0, maxInFlight: 0, clientAborts: 0 });

    // Two calls that never answer are held at once, then both clients give up.
    const abort = new AbortController();
    const held = [generate(emulator, 'a red hang [emulator:hang]', abort.signal), generate(emulator, 'a blue hang [emulator:hang]', abort.signal)].map((p) =>
      p.catch((e: unknown) => e),
    );
    await until(async () => (await readStats(emulator)).body.inFlight === 2, 'two calls in flight');
    abort.abort();
    await Promise.all(held);
    await until(async () => (await readStats(emulator)).body.inFlight === 0, 'the aborted calls to end');

    expect(await generate(emulator, 'a green square [emulator:latency=0]')).toBe(200);
    const after = await readStats(emulator);
    expect(after.body).toEqual(emulator.stats());
    expect(after.body).toMatchObject({ requests: 3, inFlight: 0, maxInFlight: 2, clientAborts: 2, byStatus: { '200': 1 } });
    expect(after.body.byOutcome).toMatchObject({ hang: 2, image: 1 });
  });

  it('reading the counters changes none of them, and a reset shows at once', async () => {
    expect(await generate(emulator, 'a teal square')).toBe(200);
    const first = (await readStats(emulator)).body;
    const second = (await readStats(emulator)).body;
    expect(second).toEqual(first);
    expect(second.byStatus).toEqual({ '200': 1 });

    emulator.resetStats();
    expect((await readStats(emulator)).body).toMatchObject({ requests: 0, maxInFlight: 0, byStatus: {} });
    // Only GET: anything else on /stats is not a route of the emulator.
    expect(await status(fetch(`${emulator.url}/stats`, { method: 'POST' }))).toBe(404);
  });
});
