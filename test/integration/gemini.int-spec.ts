/**
 * GeminiService with the real `@google/genai` SDK against the bundled emulator over HTTP:
 * image decoding per aspect ratio, retries, timeouts that really abort the request, cancellation,
 * and the semaphore bound as the server sees it.
 */
import '../support/emulator-undici-bridge';
import { GoogleGenAI } from '@google/genai';
import { Test, TestingModule } from '@nestjs/testing';
import sharp from 'sharp';
import { ASPECT_RATIOS } from '../../src/common/generation.model';
import { loadConfig } from '../../src/config/app-config';
import { ConfigModule } from '../../src/config/config.module';
import { IMAGE_SIZES } from '../../src/gemini/emulator/emulator-image';
import { GeminiEmulator, startGeminiEmulator } from '../../src/gemini/emulator/emulator.server';
import { GEMINI_BACKOFF } from '../../src/gemini/gemini.service';
import { GeminiError } from '../../src/gemini/gemini.errors';
import { GeminiModule } from '../../src/gemini/gemini.module';
import { GeminiService } from '../../src/gemini/gemini.service';
import { TelemetryModule } from '../../src/telemetry/telemetry.module';

let emulator: GeminiEmulator;
const modules: TestingModule[] = [];

beforeAll(async () => {
  emulator = await startGeminiEmulator();
});
afterAll(async () => {
  await Promise.all(modules.map((m) => m.close()));
  await emulator.close();
});

/** A GeminiService wired as in the app, pointed at the shared emulator unless `env` says otherwise. */
async function geminiService(env: Record<string, string | undefined> = {}): Promise<{ service: GeminiService; module: TestingModule }> {
  const config = loadConfig({ GEMINI_API_KEY: 'integration-key', GEMINI_BASE_URL: emulator.url, ...env });
  const module = await Test.createTestingModule({ imports: [ConfigModule.forRoot(config), TelemetryModule, GeminiModule] })
    .overrideProvider(GEMINI_BACKOFF)
    .useValue({ baseMs: 20, capMs: 100 })
    .compile();
  module.useLogger(false);
  await module.init();
  modules.push(module);
  return { service: module.get(GeminiService), module };
}

async function failure(promise: Promise<unknown>): Promise<GeminiError> {
  const error = await promise.then(
    () => {
      throw new Error('expected the call to fail');
    },
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(GeminiError);
  return error as GeminiError;
}

async function until(check: () => boolean, what: string): Promise<void> {
  // Generous: nothing here measures how fast the emulator notices (a busy machine can be slow).
  const giveUp = Date.now() + 30_000;
  while (!check()) {
    if (Date.now() > giveUp) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/** A prompt no earlier test used, so the emulator's per-prompt failure counters start at 0. */
const fresh = (text: string) => `${text} #${Math.random().toString(36).slice(2, 8)}`;

describe('GeminiService with @google/genai against the emulator', () => {
  let service: GeminiService;
  beforeAll(async () => {
    ({ service } = await geminiService());
  });

  it('returns a decodable PNG at Gemini\'s size for every aspect ratio', async () => {
    const images = await Promise.all(ASPECT_RATIOS.map((aspectRatio) => service.generateImage({ prompt: 'a lighthouse, navy and white', aspectRatio })));
    for (const [i, image] of images.entries()) {
      expect(image).toMatchObject({ mimeType: 'image/png', attempts: 1, model: 'gemini-2.5-flash-image', usage: { outputTokens: 1290 } });
      expect(image.usage.inputTokens).toBeGreaterThan(0);
      const meta = await sharp(image.data).metadata();
      expect({ format: meta.format, width: meta.width, height: meta.height }).toEqual({ format: 'png', ...IMAGE_SIZES[ASPECT_RATIOS[i]] });
    }
  });

  it('"a solid red square" is a red image, the same bytes every time', async () => {
    const [a, b] = await Promise.all([1, 2].map(() => service.generateImage({ prompt: 'a solid red square', aspectRatio: '1:1' })));
    expect(a.data.equals(b.data)).toBe(true);
    const { channels } = await sharp(a.data).stats();
    const [r, g, bl] = channels.map((c) => c.mean);
    expect(r).toBeGreaterThan(180);
    expect(g).toBeLessThan(80);
    expect(bl).toBeLessThan(80);
  });

  it('the SDK reaches the emulator on both /v1 (SDK v3 default) and /v1beta', async () => {
    emulator.resetStats();
    for (const apiVersion of [undefined, 'v1beta']) {
      const ai = new GoogleGenAI({ apiKey: 'k', vertexai: false, httpOptions: { baseUrl: emulator.url, ...(apiVersion ? { apiVersion } : {}) } });
      const response = await ai.models.generateContent({
        model: 'gemini-2.5-flash-image',
        contents: 'a purple plum',
        config: { responseModalities: ['IMAGE'], imageConfig: { aspectRatio: '4:3' } },
      });
      expect(response.candidates?.[0]?.content?.parts?.[0]?.inlineData?.mimeType).toBe('image/png');
    }
    expect(emulator.stats().byApiVersion).toEqual({ v1: 1, v1beta: 1 });
  });

  it('answers 401 in Google\'s error shape without an API key', async () => {
    const response = await fetch(`${emulator.url}/v1/models/gemini-2.5-flash-image:generateContent`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ contents: [{ parts: [{ text: 'x' }] }] }),
    });
    expect(response.status).toBe(401);
    expect(await response.json()).toEqual({ error: { code: 401, message: expect.any(String), status: 'UNAUTHENTICATED' } });
  });

  it('retries a 429 after the Retry-After hint and succeeds on attempt 2', async () => {
    const started = performance.now();
    const image = await service.generateImage({ prompt: fresh('green hills [emulator:429x1]'), aspectRatio: '1:1' });
    expect(image.attempts).toBe(2);
    // The emulator's hint is 1 s; the backoff alone (≤ 100 ms here) would have been shorter.
    expect(performance.now() - started).toBeGreaterThanOrEqual(950);
  });

  it('gives up on a persistent 500 after GEMINI_MAX_RETRIES with GEMINI_ERROR', async () => {
    const before = emulator.stats().byStatus['500'] ?? 0;
    const error = await failure(service.generateImage({ prompt: fresh('a broken robot [emulator:500]'), aspectRatio: '1:1' }));
    expect(error).toMatchObject({ code: 'GEMINI_ERROR', status: 500, attempts: 2 });
    expect((emulator.stats().byStatus['500'] ?? 0) - before).toBe(2);
  });

  it('maps a blocked prompt to GEMINI_BLOCKED and a text-only answer to GEMINI_NO_IMAGE, without retrying', async () => {
    const blocked = await failure(service.generateImage({ prompt: 'x [emulator:block]', aspectRatio: '1:1' }));
    expect(blocked).toMatchObject({ code: 'GEMINI_BLOCKED', attempts: 1 });
    const textOnly = await failure(service.generateImage({ prompt: 'x [emulator:text]', aspectRatio: '1:1' }));
    expect(textOnly).toMatchObject({ code: 'GEMINI_NO_IMAGE', attempts: 1 });
  });
});

describe('timeouts and cancellation abort the HTTP request', () => {
  it('a hanging call fails with GEMINI_TIMEOUT near GEMINI_TIMEOUT_MS, closes the connection and frees the slot', async () => {
    const { service } = await geminiService({ GEMINI_TIMEOUT_MS: '600', GEMINI_MAX_CONCURRENCY: '1' });
    emulator.resetStats();
    const started = performance.now();
    const error = await failure(service.generateImage({ prompt: 'a slow snail [emulator:hang]', aspectRatio: '1:1' }));
    const elapsed = performance.now() - started;

    expect(error).toMatchObject({ code: 'GEMINI_TIMEOUT', attempts: 1 });
    expect(elapsed).toBeGreaterThanOrEqual(590);
    // Generous: only shows the 600 ms timeout fired, not the default.
    expect(elapsed).toBeLessThan(600 + 10_000);
    await until(() => emulator.stats().clientAborts === 1, 'the emulator to see the connection closed');
    expect(emulator.stats().inFlight).toBe(0);
    expect(service.inFlight).toBe(0);

    // The single slot is usable again: the next call reaches the emulator. It hangs too, so the
    // short timeout ends it (a normal answer could lose a race against 600 ms on a busy machine).
    const next = await failure(service.generateImage({ prompt: 'after the timeout [emulator:hang]', aspectRatio: '1:1' }));
    expect(next).toMatchObject({ code: 'GEMINI_TIMEOUT', attempts: 1 });
    expect(emulator.stats().requests).toBe(2);
  });

  it('a caller abort fails with CANCELED and aborts the in-flight request', async () => {
    const { service } = await geminiService();
    emulator.resetStats();
    const controller = new AbortController();
    const pending = failure(service.generateImage({ prompt: 'x [emulator:hang]', aspectRatio: '1:1' }, { signal: controller.signal }));
    await until(() => emulator.stats().inFlight === 1, 'the request to reach the emulator');
    controller.abort();

    expect(await pending).toMatchObject({ code: 'CANCELED', attempts: 1 });
    await until(() => emulator.stats().clientAborts === 1, 'the emulator to see the connection closed');
    expect(service.inFlight).toBe(0);
  });
});

describe('concurrency', () => {
  it('never has more requests at the emulator than GEMINI_MAX_CONCURRENCY', async () => {
    const { service } = await geminiService({ GEMINI_MAX_CONCURRENCY: '2' });
    emulator.resetStats();
    let maxWaiting = 0;
    const calls = Array.from({ length: 6 }, (_, i) => service.generateImage({ prompt: `tile ${i % 2} orange [emulator:latency=150]`, aspectRatio: '1:1' }));
    const watch = setInterval(() => (maxWaiting = Math.max(maxWaiting, service.waiting)), 5);
    const images = await Promise.all(calls).finally(() => clearInterval(watch));

    expect(images).toHaveLength(6);
    expect(emulator.stats()).toMatchObject({ requests: 6, maxInFlight: 2, inFlight: 0 });
    expect(maxWaiting).toBeGreaterThanOrEqual(1);
    expect({ inFlight: service.inFlight, waiting: service.waiting }).toEqual({ inFlight: 0, waiting: 0 });
  });
});

describe('without GEMINI_API_KEY and GEMINI_BASE_URL', () => {
  it('has nothing to call and says so at start (npm start passes the bundled emulator as GEMINI_BASE_URL)', async () => {
    const module = await Test.createTestingModule({ imports: [ConfigModule.forRoot(loadConfig({})), TelemetryModule, GeminiModule] }).compile();
    module.useLogger(false);
    await expect(module.init()).rejects.toThrow(/No Gemini endpoint: set GEMINI_API_KEY, or GEMINI_BASE_URL/);
    await module.close();
  });
});
