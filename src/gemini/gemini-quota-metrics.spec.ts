import { ApiError, GenerateContentResponse } from '@google/genai';
import type { Histogram } from '@opentelemetry/sdk-metrics';
import { loadConfig } from '../config/app-config';
import { AppMetrics } from '../telemetry/app-metrics';
import { installTestTelemetry, TestTelemetry } from '../telemetry/testing';
import { InProcessGeminiQuota, quotaLimits } from './gemini-quota';
import { GeminiService } from './gemini.service';

/**
 * What the quota records, per instance: every request's wait for the quota (0 when it did not wait),
 * every 429 that paused it, and the counters exported at 0 before anything happened.
 */
const PNG = Buffer.from('89504e470d0a1a0a0000000d49484452', 'hex');

function imageResponse(): GenerateContentResponse {
  return Object.assign(new GenerateContentResponse(), {
    candidates: [{ content: { parts: [{ inlineData: { mimeType: 'image/png', data: PNG.toString('base64') } }] }, finishReason: 'STOP', index: 0 }],
    usageMetadata: { promptTokenCount: 7, candidatesTokenCount: 1290, totalTokenCount: 1297 },
  });
}

function rateLimited(retryDelay: string): ApiError {
  const details = [{ '@type': 'type.googleapis.com/google.rpc.RetryInfo', retryDelay }];
  return new ApiError({ message: JSON.stringify({ error: { code: 429, message: 'quota', status: 'RESOURCE_EXHAUSTED', details } }), status: 429 });
}

describe('Gemini quota metrics', () => {
  let telemetry: TestTelemetry;
  let service: GeminiService;
  const answers: (() => Promise<GenerateContentResponse>)[] = [];

  beforeAll(async () => {
    telemetry = installTestTelemetry();
    // No retries: a 429 fails its call at once, so the next call is the one that meets the pause.
    const config = loadConfig({ GEMINI_API_KEY: 'k-123456', GEMINI_MAX_RETRIES: '0' });
    const client = { generateContent: () => answers.shift()!() };
    service = new GeminiService(config, new AppMetrics(), () => client, new InProcessGeminiQuota(quotaLimits(config)), { baseMs: 5, capMs: 10 });
    await service.onModuleInit();
  });
  afterAll(() => telemetry.uninstall());

  const counter = async (name: string) => (await telemetry.points(name)).map((p) => p.value);
  const quotaWait = async () => (await telemetry.points('gemini.quota.wait.duration'))[0]?.value as Histogram | undefined;

  it('exports the pause and takeover counters at 0 before any pause or takeover', async () => {
    expect(await counter('gemini.quota.pauses')).toEqual([0]);
    expect(await counter('pipeline.jobs.takeovers')).toEqual([0]);
    expect((await telemetry.metric('gemini.quota.pauses'))?.descriptor.unit).toBe('{pause}');
    expect((await telemetry.metric('pipeline.jobs.takeovers'))?.descriptor.unit).toBe('{job}');
  });

  it('records the quota wait of every request, 0 when the quota did not hold it', async () => {
    answers.push(async () => imageResponse());
    await service.generateImage({ prompt: 'a teal boat', aspectRatio: '1:1' });
    expect(await quotaWait()).toMatchObject({ count: 1, sum: 0 });
    expect((await telemetry.metric('gemini.quota.wait.duration'))?.descriptor.unit).toBe('s');
    expect(((await telemetry.points('gemini.semaphore.wait.duration'))[0]?.value as Histogram).count).toBe(1);
  });

  it('counts a 429 as a pause, and the next request waits for it', async () => {
    answers.push(async () => {
      throw rateLimited('1s');
    });
    await expect(service.generateImage({ prompt: 'a red kite', aspectRatio: '1:1' })).rejects.toMatchObject({ code: 'GEMINI_RATE_LIMITED' });
    expect(await counter('gemini.quota.pauses')).toEqual([1]);

    answers.push(async () => imageResponse());
    await service.generateImage({ prompt: 'a blue kite', aspectRatio: '1:1' });
    const waits = await quotaWait();
    expect(waits?.count).toBe(3);
    // The third request started within the 1 s pause and was held until it ended.
    expect(waits!.sum).toBeGreaterThan(0);
    expect(await counter('pipeline.jobs.takeovers')).toEqual([0]);
  });
});
