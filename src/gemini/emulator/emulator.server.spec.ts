import sharp from 'sharp';
import { GeminiEmulator, startGeminiEmulator } from './emulator.server';

const MODEL_PATH = '/v1beta/models/gemini-2.5-flash-image:generateContent';

/** The body `@google/genai` sends for `generateContent`. */
function body(prompt: string, generationConfig: Record<string, unknown> = { responseModalities: ['IMAGE'] }) {
  return { contents: [{ role: 'user', parts: [{ text: prompt }] }], generationConfig };
}

async function post(emulator: GeminiEmulator, payload: unknown, options: { key?: string | null; path?: string; signal?: AbortSignal } = {}) {
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  if (options.key !== null) headers['x-goog-api-key'] = options.key ?? 'test-key';
  const response = await fetch(`${emulator.url}${options.path ?? MODEL_PATH}`, {
    method: 'POST',
    headers,
    body: typeof payload === 'string' ? payload : JSON.stringify(payload),
    signal: options.signal,
  });
  return { status: response.status, headers: response.headers, json: (await response.json()) as Record<string, any> };
}

async function until(check: () => boolean, what: string): Promise<void> {
  const giveUp = Date.now() + 5_000;
  while (!check()) {
    if (Date.now() > giveUp) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

describe('Gemini emulator', () => {
  let emulator: GeminiEmulator;
  beforeAll(async () => {
    emulator = await startGeminiEmulator({ maxBodyBytes: 64 * 1024 });
  });
  afterAll(() => emulator.close());

  it('listens on an ephemeral 127.0.0.1 port and answers /health', async () => {
    expect(emulator.url).toBe(`http://127.0.0.1:${emulator.port}`);
    const response = await fetch(`${emulator.url}/health`);
    expect(response.status).toBe(200);
  });

  it('answers an image request like Gemini 2.5 Flash Image', async () => {
    const { status, json } = await post(emulator, body('a green meadow', { responseModalities: ['IMAGE'], imageConfig: { aspectRatio: '9:16' } }));
    expect(status).toBe(200);
    const [candidate] = json.candidates;
    expect(candidate).toMatchObject({ finishReason: 'STOP', index: 0, content: { role: 'model' } });
    expect(candidate.content.parts).toHaveLength(1);
    const { mimeType, data } = candidate.content.parts[0].inlineData;
    expect(mimeType).toBe('image/png');
    expect(await sharp(Buffer.from(data, 'base64')).metadata()).toMatchObject({ width: 768, height: 1344 });
    expect(json.usageMetadata).toEqual(expect.objectContaining({ candidatesTokenCount: 1290, promptTokenCount: expect.any(Number) }));
    expect(json.usageMetadata.totalTokenCount).toBe(json.usageMetadata.promptTokenCount + 1290);
    expect(json.modelVersion).toBe('gemini-2.5-flash-image');
    expect(typeof json.responseId).toBe('string');
  });

  it('adds a text part when TEXT is among the response modalities (or none are given)', async () => {
    for (const config of [{ responseModalities: ['TEXT', 'IMAGE'] }, {}]) {
      const { json } = await post(emulator, body('a green meadow', config));
      const parts = json.candidates[0].content.parts;
      expect(parts.map((p: object) => Object.keys(p)[0])).toEqual(['text', 'inlineData']);
    }
  });

  it('accepts /v1/, /v1beta/ and /v1alpha/ paths and ?key=', async () => {
    emulator.resetStats();
    for (const version of ['v1', 'v1beta', 'v1alpha']) {
      const { status } = await post(emulator, body('grey'), { path: `/${version}/models/m:generateContent` });
      expect(status).toBe(200);
    }
    const { status } = await post(emulator, body('grey'), { key: null, path: `${MODEL_PATH}?key=abc` });
    expect(status).toBe(200);
    expect(emulator.stats().byApiVersion).toEqual({ v1: 1, v1beta: 2, v1alpha: 1 });
  });

  it('answers errors in Google\'s shape: 401 without key, 404 elsewhere, 400 for bad input, 413 for big bodies', async () => {
    const noKey = await post(emulator, body('x'), { key: null });
    expect(noKey).toMatchObject({ status: 401, json: { error: { code: 401, status: 'UNAUTHENTICATED' } } });

    const unknown = await post(emulator, body('x'), { path: '/v1beta/models/m:countTokens' });
    expect(unknown).toMatchObject({ status: 404, json: { error: { code: 404, status: 'NOT_FOUND' } } });
    const getRoute = await fetch(`${emulator.url}${MODEL_PATH}`);
    expect(getRoute.status).toBe(404);

    for (const bad of ['{not json', { contents: [] }, body('x', { imageConfig: { aspectRatio: '2:1' } }), body('x [emulator:sometimes]')]) {
      const { status, json } = await post(emulator, bad);
      expect({ status, code: json.error.code, grpc: json.error.status }).toEqual({ status: 400, code: 400, grpc: 'INVALID_ARGUMENT' });
    }

    const big = await post(emulator, body('x'.repeat(70 * 1024)));
    expect(big).toMatchObject({ status: 413, json: { error: { code: 413 } } });
  });

  it('fails on directive: 503 with Retry-After and RetryInfo; 500 without', async () => {
    const unavailable = await post(emulator, body('blue [emulator:503]'));
    expect(unavailable.status).toBe(503);
    expect(unavailable.headers.get('retry-after')).toBe('1');
    expect(unavailable.json.error).toMatchObject({
      code: 503,
      status: 'UNAVAILABLE',
      details: [{ '@type': 'type.googleapis.com/google.rpc.RetryInfo', retryDelay: '1s' }],
    });
    const limited = await post(emulator, body('blue [emulator:429]'));
    expect(limited).toMatchObject({ status: 429, json: { error: { status: 'RESOURCE_EXHAUSTED' } } });
    expect(limited.headers.get('retry-after')).toBe('1');
    const longer = await post(emulator, body('blue [emulator:429] [emulator:retryafter=7]'));
    expect(longer.headers.get('retry-after')).toBe('7');
    expect(longer.json.error.details).toEqual([{ '@type': 'type.googleapis.com/google.rpc.RetryInfo', retryDelay: '7s' }]);

    const internal = await post(emulator, body('blue [emulator:500]'));
    expect(internal).toMatchObject({ status: 500, json: { error: { status: 'INTERNAL' } } });
    expect(internal.headers.get('retry-after')).toBeNull();
  });

  it('paints with the dominant colours of the reference images sent as inline image parts', async () => {
    const solid = (background: string) => sharp({ create: { width: 64, height: 48, channels: 3, background } }).png().toBuffer();
    const payload = {
      contents: [
        {
          role: 'user',
          parts: [
            { text: 'a quiet landscape' },
            { inlineData: { mimeType: 'image/png', data: (await solid('#c81e1e')).toString('base64') } },
            { inlineData: { mimeType: 'image/png', data: (await solid('#1e3cc8')).toString('base64') } },
          ],
        },
      ],
      generationConfig: { responseModalities: ['IMAGE'] },
    };
    const answer = await post(emulator, payload);
    expect(answer.status).toBe(200);
    const png = Buffer.from(answer.json.candidates[0].content.parts[0].inlineData.data, 'base64');
    // The first reference's colour covers the largest area: it is the picture's dominant colour.
    const { dominant } = await sharp(png).stats();
    expect(Math.abs(dominant.r - 0xc8) + Math.abs(dominant.g - 0x1e) + Math.abs(dominant.b - 0x1e)).toBeLessThan(60);
    const without = await post(emulator, { ...payload, contents: [{ role: 'user', parts: [{ text: 'a quiet landscape' }] }] });
    expect(without.json.candidates[0].content.parts[0].inlineData.data).not.toBe(answer.json.candidates[0].content.parts[0].inlineData.data);
    const bad = await post(emulator, { ...payload, contents: [{ role: 'user', parts: [{ text: 'x' }, { inlineData: { mimeType: 'text/html', data: 'PGI+' } }] }] });
    expect(bad.status).toBe(400);
  });

  it('[emulator:hangx1] hangs the first request with that exact prompt until its client leaves, then answers', async () => {
    const prompt = `lime ${Math.random()} [emulator:hangx1]`;
    const hangsBefore = emulator.stats().byOutcome.hang;
    const client = new AbortController();
    const first = post(emulator, body(prompt), { signal: client.signal }).catch((e: unknown) => e);
    await until(() => emulator.stats().byOutcome.hang === hangsBefore + 1, 'the first request to hang');
    client.abort();
    expect(await first).toMatchObject({ name: 'AbortError' });
    const second = await post(emulator, body(prompt));
    expect(second.status).toBe(200);
  });

  it('[emulator:500x2] fails the first two requests with that exact prompt, then succeeds', async () => {
    const prompt = `teal ${Math.random()} [emulator:500x2]`;
    const statuses = [];
    for (let i = 0; i < 3; i++) statuses.push((await post(emulator, body(prompt))).status);
    expect(statuses).toEqual([500, 500, 200]);
    expect((await post(emulator, body(`${prompt} `))).status).toBe(500); // another prompt has its own count
  });

  it('blocks and answers text-only on directive', async () => {
    const blocked = await post(emulator, body('x [emulator:block]'));
    expect(blocked.status).toBe(200);
    expect(blocked.json.candidates).toBeUndefined();
    expect(blocked.json.promptFeedback.blockReason).toBe('SAFETY');

    const text = await post(emulator, body('x [emulator:text]'));
    expect(text.json.candidates[0].content.parts).toEqual([{ text: expect.any(String) }]);
    expect(text.json.candidates[0].finishReason).toBe('STOP');
  });

  it('[emulator:latency=MS] delays the answer', async () => {
    const started = performance.now();
    expect((await post(emulator, body('x [emulator:latency=150]'))).status).toBe(200);
    expect(performance.now() - started).toBeGreaterThanOrEqual(145);
  });

  it('[emulator:hang] holds the request until the client aborts, and counts the abort', async () => {
    emulator.resetStats();
    const controller = new AbortController();
    const pending = post(emulator, body('x [emulator:hang]'), { signal: controller.signal });
    await until(() => emulator.stats().inFlight === 1, 'the hanging request to arrive');
    controller.abort();
    await expect(pending).rejects.toThrow();
    await until(() => emulator.stats().clientAborts === 1, 'the emulator to see the connection close');
    expect(emulator.stats()).toMatchObject({ inFlight: 0, maxInFlight: 1, byOutcome: expect.objectContaining({ hang: 1 }) });
  });

  it('serves repeated pictures from its cache', async () => {
    const before = emulator.stats();
    await post(emulator, body('cache me, purple'));
    await post(emulator, body('cache me, purple [emulator:latency=1]')); // directives do not change the picture
    const after = emulator.stats();
    expect(after.renders - before.renders).toBe(1);
    expect(after.cacheHits - before.cacheHits).toBe(1);
  });
});

describe('Gemini emulator fault rates', () => {
  async function statuses(seed: number, n: number): Promise<number[]> {
    const emulator = await startGeminiEmulator({ seed, rate429: 0.3, rate503: 0.2, blockRate: 0.1 });
    try {
      const out: number[] = [];
      for (let i = 0; i < n; i++) {
        const { status, json } = await post(emulator, body('a solid white wall'));
        out.push(status === 200 && json.promptFeedback ? 299 : status); // 299: blocked
      }
      return out;
    } finally {
      await emulator.close();
    }
  }

  it('rolls faults at the configured rates, reproducibly for a seed', async () => {
    const first = await statuses(7, 100);
    expect(await statuses(7, 100)).toEqual(first);
    const count = (s: number) => first.filter((x) => x === s).length;
    // Binomial(100, p): these bounds hold for all but ~1e-4 of seeds, and seed 7 is fixed.
    expect(count(429)).toBeGreaterThan(15);
    expect(count(429)).toBeLessThan(45);
    expect(count(503)).toBeGreaterThan(7);
    expect(count(503)).toBeLessThan(35);
    expect(count(299)).toBeGreaterThan(1);
    expect(count(299)).toBeLessThan(22);
    expect(count(200)).toBe(100 - count(429) - count(503) - count(299));
  });

  it('close() ends hanging requests instead of waiting for them', async () => {
    const emulator = await startGeminiEmulator();
    const pending = post(emulator, body('x [emulator:hang]')).catch((error: unknown) => error);
    await until(() => emulator.stats().inFlight === 1, 'the hanging request');
    await emulator.close();
    // fetch's TypeError comes from Node's realm, not Jest's, so match its message, not its class.
    expect(await pending).toMatchObject({ message: expect.stringMatching(/fetch failed|terminated|other side closed/) });
  });
});
