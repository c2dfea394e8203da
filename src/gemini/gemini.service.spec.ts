import { InProcessGeminiQuota, quotaLimits } from './gemini-quota';
import { ApiError, GenerateContentParameters, GenerateContentResponse } from '@google/genai';
import { loadConfig } from '../config/app-config';
import { AppMetrics } from '../telemetry/app-metrics';
import { GeminiClient } from './gemini.client';
import { GeminiError } from './gemini.errors';
import { BackoffPolicy, backoffDelayMs, GeminiService } from './gemini.service';

const PNG = Buffer.from('89504e470d0a1a0a0000000d49484452', 'hex');
const API_KEY = 'test-key-1234';

function imageResponse(overrides: Partial<GenerateContentResponse> = {}): GenerateContentResponse {
  return Object.assign(new GenerateContentResponse(), {
    candidates: [
      {
        content: { role: 'model', parts: [{ text: 'here you go' }, { inlineData: { mimeType: 'image/png', data: PNG.toString('base64') } }] },
        finishReason: 'STOP',
        index: 0,
      },
    ],
    usageMetadata: { promptTokenCount: 7, candidatesTokenCount: 1290, totalTokenCount: 1297 },
    modelVersion: 'gemini-2.5-flash-image',
    responseId: 'resp-1',
    ...overrides,
  });
}

function apiError(status: number, retryDelay?: string): ApiError {
  const body = {
    error: {
      code: status,
      message: `failure ${status}`,
      status: status === 429 ? 'RESOURCE_EXHAUSTED' : 'UNAVAILABLE',
      ...(retryDelay ? { details: [{ '@type': 'type.googleapis.com/google.rpc.RetryInfo', retryDelay }] } : {}),
    },
  };
  return new ApiError({ message: JSON.stringify(body), status });
}

/** Rejects like fetch does when the request's signal aborts. */
function hangUntilAborted(params: GenerateContentParameters): Promise<never> {
  return new Promise((_, reject) => {
    const signal = params.config!.abortSignal!;
    signal.addEventListener('abort', () => reject(new DOMException('This operation was aborted', 'AbortError')), { once: true });
  });
}

type Step = (params: GenerateContentParameters) => Promise<GenerateContentResponse>;

/** A fake SDK that plays `steps` in order (the last one repeats) and remembers every call. */
function fakeClient(...steps: Step[]) {
  const calls: GenerateContentParameters[] = [];
  const client: GeminiClient = {
    generateContent: (params) => {
      calls.push(params);
      return steps[Math.min(calls.length, steps.length) - 1](params);
    },
  };
  return { client, calls };
}

const ok: Step = async () => imageResponse();
const fail =
  (error: unknown): Step =>
  async () => {
    throw error;
  };

async function build(
  client: GeminiClient,
  env: Record<string, string> = {},
  backoff: BackoffPolicy = { baseMs: 10, capMs: 50 },
) {
  const config = loadConfig({ GEMINI_API_KEY: API_KEY, ...env });
  const factory = jest.fn(() => client);
  // No telemetry SDK here, so AppMetrics is a no-op; gemini.telemetry.spec.ts checks what it records.
  const service = new GeminiService(config, new AppMetrics(), factory, new InProcessGeminiQuota(quotaLimits(config)), backoff);
  await service.onModuleInit();
  return { service, factory };
}

async function failure(promise: Promise<unknown>): Promise<GeminiError> {
  try {
    await promise;
  } catch (error) {
    expect(error).toBeInstanceOf(GeminiError);
    return error as GeminiError;
  }
  throw new Error('expected the call to fail');
}

const request = { prompt: 'a red fox in the snow', aspectRatio: '16:9' as const };


describe('GeminiService.generateImage', () => {
  it('sends one image request and returns the decoded image with usage', async () => {
    const { client, calls } = fakeClient(ok);
    const { service, factory } = await build(client, { GEMINI_BASE_URL: 'http://127.0.0.1:9' });

    const image = await service.generateImage(request);

    expect(factory).toHaveBeenCalledWith({ apiKey: API_KEY, baseUrl: 'http://127.0.0.1:9' });
    expect(image).toEqual({ data: PNG, mimeType: 'image/png', usage: { inputTokens: 7, outputTokens: 1290 }, attempts: 1, model: 'gemini-2.5-flash-image' });
    expect(calls).toHaveLength(1);
    expect(calls[0]).toMatchObject({
      model: 'gemini-2.5-flash-image',
      contents: request.prompt,
      config: { responseModalities: ['IMAGE'], imageConfig: { aspectRatio: '16:9' } },
    });
    expect(calls[0].config?.abortSignal).toBeInstanceOf(AbortSignal);
  });

  it('retries 429, 5xx and network errors up to GEMINI_MAX_RETRIES', async () => {
    const network = new TypeError('fetch failed', { cause: Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' }) });
    const { client, calls } = fakeClient(fail(apiError(429)), fail(apiError(500)), fail(network), ok);
    const { service } = await build(client, { GEMINI_MAX_RETRIES: '3' });

    const image = await service.generateImage(request);

    expect(image.attempts).toBe(4);
    expect(calls).toHaveLength(4);
  });

  it('gives up after the retry budget: 429 → GEMINI_RATE_LIMITED, other → GEMINI_ERROR', async () => {
    const limited = fakeClient(fail(apiError(429)));
    const rateLimited = await failure((await build(limited.client, { GEMINI_MAX_RETRIES: '2' })).service.generateImage(request));
    expect(rateLimited).toMatchObject({ code: 'GEMINI_RATE_LIMITED', status: 429, attempts: 3 });
    expect(limited.calls).toHaveLength(3);

    const broken = fakeClient(fail(apiError(502)));
    const error = await failure((await build(broken.client, { GEMINI_MAX_RETRIES: '1' })).service.generateImage(request));
    expect(error).toMatchObject({ code: 'GEMINI_ERROR', status: 502, attempts: 2 });
  });

  it('does not retry client errors', async () => {
    const { client, calls } = fakeClient(fail(apiError(400)), ok);
    const { service } = await build(client, { GEMINI_MAX_RETRIES: '3' });
    const error = await failure(service.generateImage(request));
    expect(error).toMatchObject({ code: 'GEMINI_ERROR', status: 400, retryable: false, attempts: 1 });
    expect(calls).toHaveLength(1);
  });

  it('waits at least the server retry hint before retrying', async () => {
    const { client, calls } = fakeClient(fail(apiError(429, '0.4s')), ok);
    // Jitter pinned to 0: without the hint the retry would start at once.
    const { service } = await build(client, {}, { baseMs: 10, capMs: 50, random: () => 0 });
    const started = performance.now();
    const image = await service.generateImage(request);
    expect(image.attempts).toBe(2);
    expect(performance.now() - started).toBeGreaterThanOrEqual(390);
    expect(calls).toHaveLength(2);
  });

  it('does not start a retry the deadline cannot hold', async () => {
    const { client, calls } = fakeClient(fail(apiError(429, '30s')), ok);
    const { service } = await build(client, { GEMINI_JOB_DEADLINE_MS: '2000' });
    const started = performance.now();
    const error = await failure(service.generateImage(request));
    expect(error).toMatchObject({ code: 'GEMINI_RATE_LIMITED', attempts: 1 });
    expect(calls).toHaveLength(1);
    // It gave up instead of sleeping 30 s into a 2 s deadline.
    expect(performance.now() - started).toBeLessThan(2000);
  });

  it('aborts a request that outlives GEMINI_TIMEOUT_MS and does not retry it', async () => {
    const { client, calls } = fakeClient(hangUntilAborted);
    const { service } = await build(client, { GEMINI_TIMEOUT_MS: '150', GEMINI_MAX_RETRIES: '2' });
    const error = await failure(service.generateImage(request));
    expect(error).toMatchObject({ code: 'GEMINI_TIMEOUT', retryable: false, attempts: 1 });
    expect(calls).toHaveLength(1);
    expect(calls[0].config?.abortSignal?.aborted).toBe(true);
    expect(service.inFlight).toBe(0);
  });

  it('caps an attempt at the time left before the deadline', async () => {
    const { client } = fakeClient(hangUntilAborted);
    const { service } = await build(client, { GEMINI_TIMEOUT_MS: '60000', GEMINI_JOB_DEADLINE_MS: '200' });
    const error = await failure(service.generateImage(request));
    expect(error.code).toBe('GEMINI_TIMEOUT');
  });

  it('cancels an in-flight request when the caller aborts, without retrying', async () => {
    const { client, calls } = fakeClient(hangUntilAborted);
    const { service } = await build(client, { GEMINI_MAX_RETRIES: '3' });
    const controller = new AbortController();
    const pending = service.generateImage(request, { signal: controller.signal });
    await new Promise((resolve) => setTimeout(resolve, 20));
    controller.abort();
    const error = await failure(pending);
    expect(error).toMatchObject({ code: 'CANCELED', retryable: false });
    expect(calls).toHaveLength(1);
    expect(calls[0].config?.abortSignal?.aborted).toBe(true);
    expect(service.inFlight).toBe(0);
  });

  it('cancels during the backoff sleep', async () => {
    const { client, calls } = fakeClient(fail(apiError(503)), ok);
    const { service } = await build(client, {}, { baseMs: 60_000, capMs: 60_000, random: () => 1 });
    const controller = new AbortController();
    const pending = service.generateImage(request, { signal: controller.signal });
    await new Promise((resolve) => setTimeout(resolve, 50));
    controller.abort();
    const error = await failure(pending);
    expect(error).toMatchObject({ code: 'CANCELED', attempts: 1 });
    expect(calls).toHaveLength(1);
    expect(service.inFlight).toBe(0);
  });

  it('holds one semaphore slot per call, queues the rest, and lets a queued caller cancel', async () => {
    const releases: (() => void)[] = [];
    const { client } = fakeClient(
      () =>
        new Promise((resolve) => {
          releases.push(() => resolve(imageResponse()));
        }),
    );
    const { service } = await build(client, { GEMINI_MAX_CONCURRENCY: '1' });
    const acquired: string[] = [];

    const first = service.generateImage(request, { onSlotAcquired: () => acquired.push('first') });
    const controller = new AbortController();
    const canceled = service.generateImage(request, { signal: controller.signal, onSlotAcquired: () => acquired.push('canceled') });
    const third = service.generateImage(request, { onSlotAcquired: () => acquired.push('third') });
    await new Promise((resolve) => setImmediate(resolve));

    expect({ inFlight: service.inFlight, waiting: service.waiting }).toEqual({ inFlight: 1, waiting: 2 });

    controller.abort();
    expect((await failure(canceled)).code).toBe('CANCELED');
    expect(service.waiting).toBe(1);

    releases[0]();
    await first;
    await new Promise((resolve) => setImmediate(resolve));
    releases[1]();
    await third;
    expect(acquired).toEqual(['first', 'third']);
    expect({ inFlight: service.inFlight, waiting: service.waiting }).toEqual({ inFlight: 0, waiting: 0 });
  });

  it('maps refusals and missing images', async () => {
    const cases: [GenerateContentResponse, string][] = [
      [imageResponse({ candidates: undefined, promptFeedback: { blockReason: 'SAFETY' as never } }), 'GEMINI_BLOCKED'],
      [imageResponse({ candidates: [{ content: { parts: [] }, finishReason: 'IMAGE_SAFETY' as never }] }), 'GEMINI_BLOCKED'],
      [imageResponse({ candidates: [{ content: { parts: [{ text: 'I cannot draw that' }] }, finishReason: 'STOP' as never }] }), 'GEMINI_NO_IMAGE'],
      [imageResponse({ candidates: [] }), 'GEMINI_NO_IMAGE'],
    ];
    for (const [response, code] of cases) {
      const { client, calls } = fakeClient(async () => response);
      const { service } = await build(client, { GEMINI_MAX_RETRIES: '2' });
      const error = await failure(service.generateImage(request));
      expect({ code: error.code, retryable: error.retryable, calls: calls.length }).toEqual({ code, retryable: false, calls: 1 });
    }
  });

  it('skips draft images marked as thoughts', async () => {
    const final = Buffer.from('final image');
    const { client } = fakeClient(async () =>
      imageResponse({
        candidates: [
          {
            content: {
              parts: [
                { thought: true, inlineData: { mimeType: 'image/png', data: Buffer.from('draft').toString('base64') } },
                { inlineData: { mimeType: 'image/webp', data: final.toString('base64') } },
              ],
            },
            finishReason: 'STOP' as never,
          },
        ],
      }),
    );
    const image = await (await build(client)).service.generateImage(request);
    expect(image).toMatchObject({ data: final, mimeType: 'image/webp' });
  });

  it('never puts the API key in an error message', async () => {
    const { client } = fakeClient(fail(new ApiError({ message: `{"error":{"message":"API key ${API_KEY} not valid","status":"INVALID_ARGUMENT"}}`, status: 400 })));
    const error = await failure((await build(client)).service.generateImage(request));
    expect(error.message).not.toContain(API_KEY);
    expect(error.message).toContain('[redacted]');
  });
});

describe('backoffDelayMs', () => {
  const policy = { baseMs: 500, capMs: 10_000 };
  it('grows exponentially up to the cap with full jitter', () => {
    expect([1, 2, 3, 6, 10].map((retry) => backoffDelayMs(retry, undefined, { ...policy, random: () => 0.999999 }))).toEqual(
      [500, 1000, 2000, 10_000, 10_000].map((ms) => expect.closeTo(ms, 0)),
    );
    expect(backoffDelayMs(3, undefined, { ...policy, random: () => 0 })).toBe(0);
    expect(backoffDelayMs(3, undefined, { ...policy, random: () => 0.5 })).toBe(1000);
  });

  it('never waits less than the server hint', () => {
    expect(backoffDelayMs(1, 3000, { ...policy, random: () => 0.5 })).toBe(3000);
    expect(backoffDelayMs(5, 100, { ...policy, random: () => 0.5 })).toBe(4000);
  });
});
