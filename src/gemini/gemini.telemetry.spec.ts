import { InProcessGeminiQuota, quotaLimits } from './gemini-quota';
import { ApiError, GenerateContentResponse } from '@google/genai';
import { SpanKind } from '@opentelemetry/api';
import type { Histogram } from '@opentelemetry/sdk-metrics';
import { loadConfig } from '../config/app-config';
import { AppMetrics } from '../telemetry/app-metrics';
import { installTestTelemetry, TestTelemetry } from '../telemetry/testing';
import { GeminiService } from './gemini.service';

/*
 * One telemetry install and one service for the whole file: the span helper's tracer binds to
 * the first TracerProvider it sees, and several services would race on the same gauges.
 */
const MODEL = 'gemini-2.5-flash-image';
let telemetry: TestTelemetry;
let service: GeminiService;
const answers: (() => Promise<GenerateContentResponse>)[] = [];

function imageResponse(): GenerateContentResponse {
  return Object.assign(new GenerateContentResponse(), {
    candidates: [{ content: { parts: [{ inlineData: { mimeType: 'image/png', data: 'iVBORw0KGgo=' } }] }, finishReason: 'STOP', index: 0 }],
    usageMetadata: { promptTokenCount: 7, candidatesTokenCount: 1290, totalTokenCount: 1297 },
    responseId: 'resp-1',
    modelVersion: MODEL,
  });
}

beforeAll(async () => {
  telemetry = installTestTelemetry();
  const config = loadConfig({ GEMINI_API_KEY: 'k-123456', GEMINI_MAX_CONCURRENCY: '1', GEMINI_MAX_RETRIES: '1' });
  service = new GeminiService(config, new AppMetrics(), () => ({ generateContent: () => answers.shift()!() }), new InProcessGeminiQuota(quotaLimits(config)), { baseMs: 5, capMs: 10 });
  await service.onModuleInit();
});
afterAll(() => telemetry.uninstall());

async function gauges(): Promise<number[]> {
  const read = async (name: string) => (await telemetry.points(name))[0]?.value as number;
  return [await read('gemini.semaphore.in_flight'), await read('gemini.semaphore.waiting'), await read('gemini.semaphore.capacity')];
}

it('records one CLIENT span and one operation duration per attempt, plus token usage and semaphore wait', async () => {
  answers.push(
    async () => {
      throw new ApiError({ message: '{"error":{"code":503,"status":"UNAVAILABLE"}}', status: 503 });
    },
    async () => imageResponse(),
  );

  await service.generateImage({ prompt: 'a teal boat', aspectRatio: '1:1' });

  const spans = telemetry.spans();
  expect(spans.map((s) => [s.name, s.kind])).toEqual([
    [`generate_content ${MODEL}`, SpanKind.CLIENT],
    [`generate_content ${MODEL}`, SpanKind.CLIENT],
  ]);
  expect(spans[0].attributes).toMatchObject({ 'gen_ai.operation.name': 'generate_content', 'error.type': 'GEMINI_ERROR' });
  expect(spans[1].attributes).toMatchObject({
    'gen_ai.operation.name': 'generate_content',
    'gen_ai.provider.name': 'gcp.gemini',
    'gen_ai.request.model': MODEL,
    'gen_ai.response.finish_reasons': ['stop'],
    'gen_ai.response.id': 'resp-1',
    'gen_ai.usage.input_tokens': 7,
    'gen_ai.usage.output_tokens': 1290,
  });
  expect(spans[1].attributes['error.type']).toBeUndefined();

  const operations = await telemetry.points('gen_ai.client.operation.duration');
  expect(operations.map((p) => [p.attributes['error.type'] ?? 'ok', (p.value as Histogram).count]).sort()).toEqual([
    ['GEMINI_ERROR', 1],
    ['ok', 1],
  ]);
  expect(operations.every((p) => p.attributes['gen_ai.request.model'] === MODEL)).toBe(true);

  const tokens = await telemetry.points('gen_ai.client.token.usage');
  expect(tokens.map((p) => [p.attributes['gen_ai.token.type'], (p.value as Histogram).sum]).sort()).toEqual([
    ['input', 7],
    ['output', 1290],
  ]);

  const waits = await telemetry.points('gemini.semaphore.wait.duration');
  expect(waits.map((p) => (p.value as Histogram).count)).toEqual([1]);
});

it('exposes the semaphore as gauges', async () => {
  let answer!: () => void;
  const pending = new Promise<GenerateContentResponse>((resolve) => (answer = () => resolve(imageResponse())));
  answers.push(() => pending, async () => imageResponse());

  const first = service.generateImage({ prompt: 'one', aspectRatio: '1:1' });
  const second = service.generateImage({ prompt: 'two', aspectRatio: '1:1' });
  await new Promise((resolve) => setImmediate(resolve));
  expect(await gauges()).toEqual([1, 1, 1]);

  answer();
  await Promise.all([first, second]);
  expect(await gauges()).toEqual([0, 0, 1]);
});
