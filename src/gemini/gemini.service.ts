import { Inject, Injectable, Logger, OnModuleInit, Optional } from '@nestjs/common';
import type { GenerateContentResponse, Part } from '@google/genai';
import { SpanKind } from '@opentelemetry/api';
import { setTimeout as sleep } from 'node:timers/promises';
import type { AspectRatio, GenerationUsage } from '../common/generation.model';
import { AppConfig } from '../config/app-config';
import { AppMetrics } from '../telemetry/app-metrics';
import { withSpan } from '../telemetry/tracing';
import { GEMINI_CLIENT_FACTORY, GeminiClient, GeminiClientFactory, GeminiEndpoint } from './gemini.client';
import { classifyGeminiError, GeminiError } from './gemini.errors';
import { GEMINI_QUOTA, GeminiQuota } from './gemini-quota';
import { geminiServerAttributes } from './gemini-server-attributes';

export interface GenerateImageRequest {
  prompt: string;
  aspectRatio: AspectRatio;
  /** Reference images sent with the prompt as inline image parts (already sized for the model). */
  images?: { data: Buffer; mimeType: string }[];
}

export interface GenerateImageOptions {
  /** Aborts the call wherever it is: queued for a slot, mid-request, or in backoff. */
  signal?: AbortSignal;
  onSlotAcquired?: () => void;
  /**
   * Who the call is for (an API key's or a client address's identity): one client holds at most
   * GEMINI_MAX_CONCURRENCY_PER_CLIENT slots, so others keep moving while its calls run or hang.
   */
  client?: string;
}

export interface GeneratedImage {
  data: Buffer;
  mimeType: string;
  usage: GenerationUsage;
  /** HTTP attempts this call took (1 = no retry). */
  attempts: number;
  model: string;
}

/** Full-jitter exponential backoff between retries: random(0, min(cap, base · 2^(retry-1))). */
export interface BackoffPolicy {
  baseMs: number;
  capMs: number;
  /** Source of jitter in [0, 1); `Math.random` unless a test pins it. */
  random?: () => number;
}

export const GEMINI_BACKOFF = Symbol('GEMINI_BACKOFF');
export const DEFAULT_BACKOFF: BackoffPolicy = { baseMs: 500, capMs: 10_000 };

/** A retry is not worth starting with less time than this left before the deadline. */
const MIN_ATTEMPT_MS = 1_000;
const EMULATOR_API_KEY = 'emulator';

/** `retry` counts from 1; a server retry hint (`retryAfterMs`) is a floor, never shortened. */
export function backoffDelayMs(retry: number, retryAfterMs: number | undefined, policy: BackoffPolicy): number {
  const ceiling = Math.min(policy.capMs, policy.baseMs * 2 ** (retry - 1));
  const jittered = (policy.random ?? Math.random)() * ceiling;
  return Math.max(jittered, retryAfterMs ?? 0);
}

/** finishReason values that mean "refused for policy reasons", as opposed to "drew nothing". */
const BLOCKING_FINISH_REASONS = new Set([
  'SAFETY',
  'PROHIBITED_CONTENT',
  'BLOCKLIST',
  'SPII',
  'RECITATION',
  'IMAGE_SAFETY',
  'IMAGE_PROHIBITED_CONTENT',
  'IMAGE_RECITATION',
]);

function firstImage(parts: Part[]): { data: Buffer; mimeType: string } | undefined {
  for (const part of parts) {
    const inline = part.inlineData;
    // Thinking models may send draft images marked `thought`; only the final one counts.
    if (part.thought || !inline?.data || !inline.mimeType?.startsWith('image/')) continue;
    const data = Buffer.from(inline.data, 'base64');
    if (data.length > 0) return { data, mimeType: inline.mimeType };
  }
  return undefined;
}

/** Reads parts directly: the SDK's `.text`/`.data` getters warn on mixed text+image answers. */
function extractImage(response: GenerateContentResponse): { data: Buffer; mimeType: string } {
  const blockReason = response.promptFeedback?.blockReason;
  if (blockReason) throw new GeminiError('GEMINI_BLOCKED', `Gemini refused the prompt (blockReason ${blockReason})`);
  const candidate = response.candidates?.[0];
  const parts = candidate?.content?.parts ?? [];
  const image = firstImage(parts);
  if (image) return image;
  const finishReason = candidate?.finishReason;
  if (finishReason && BLOCKING_FINISH_REASONS.has(finishReason)) {
    throw new GeminiError('GEMINI_BLOCKED', `Gemini refused to draw it (finishReason ${finishReason})`);
  }
  const text = parts
    .map((p) => (p.thought ? '' : (p.text ?? '')))
    .join(' ')
    .trim();
  throw new GeminiError(
    'GEMINI_NO_IMAGE',
    `Gemini answered without an image (finishReason ${finishReason ?? 'none'})${text ? `: ${text.slice(0, 200)}` : ''}`,
  );
}

/**
 * Image generation through `@google/genai`. Every call holds one slot of a semaphore
 * (GEMINI_MAX_CONCURRENCY) for all of its attempts; each attempt is bounded by GEMINI_TIMEOUT_MS
 * and aborts its HTTP request when that fires or the caller's signal does. 429, 5xx and network
 * errors are retried (GEMINI_MAX_RETRIES, full-jitter backoff that respects the server's retry
 * hint) while the call's deadline allows; timeouts, blocks, missing images and cancellation are not.
 */
@Injectable()
export class GeminiService implements OnModuleInit {
  private readonly logger = new Logger(GeminiService.name);
  private readonly backoff: BackoffPolicy;
  private client: GeminiClient | undefined;
  private endpoint: GeminiEndpoint | undefined;

  constructor(
    private readonly config: AppConfig,
    private readonly metrics: AppMetrics,
    @Inject(GEMINI_CLIENT_FACTORY) private readonly createClient: GeminiClientFactory,
    @Inject(GEMINI_QUOTA) private readonly quota: GeminiQuota,
    @Optional() @Inject(GEMINI_BACKOFF) backoff?: BackoffPolicy,
  ) {
    this.backoff = backoff ?? DEFAULT_BACKOFF;
    metrics.gauge('gemini.semaphore.in_flight', 'Gemini calls of this instance holding a quota slot', () => this.quota.inFlight, '{call}');
    metrics.gauge('gemini.semaphore.waiting', 'Gemini calls of this instance waiting for a quota slot', () => this.quota.waiting, '{call}');
    metrics.gauge('gemini.semaphore.capacity', 'Quota slots (GEMINI_MAX_CONCURRENCY; global with REDIS_URL)', () => this.quota.capacity, '{call}');
  }

  /**
   * Picks the endpoint: the key (and GEMINI_BASE_URL if set); without a key, GEMINI_BASE_URL with a
   * placeholder key (an emulator accepts any). With neither there is nothing to call: `npm start`
   * never gets here that way, since main.ts then starts the bundled emulator and passes its URL as
   * GEMINI_BASE_URL; a test building the app does the same (test/support/gemini-emulator.ts).
   */
  onModuleInit(): void {
    const { apiKey, baseUrl } = this.config.gemini;
    if (apiKey !== undefined) {
      this.endpoint = { apiKey, baseUrl };
    } else if (baseUrl !== undefined) {
      this.endpoint = { apiKey: EMULATOR_API_KEY, baseUrl };
      this.logger.warn(`GEMINI_API_KEY is not set: sending Gemini calls to GEMINI_BASE_URL ${baseUrl} with a placeholder key`);
    } else {
      throw new Error('No Gemini endpoint: set GEMINI_API_KEY, or GEMINI_BASE_URL (npm start sets it to the bundled emulator when neither is set)');
    }
    this.client = this.createClient(this.endpoint);
  }

  /** Calls holding a semaphore slot now. */
  get inFlight(): number {
    return this.quota.inFlight;
  }

  /** Calls queued for a slot now. */
  get waiting(): number {
    return this.quota.waiting;
  }

  get capacity(): number {
    return this.quota.capacity;
  }

  /**
   * Generates one image. Rejects with a GeminiError: `CANCELED` when `opts.signal` aborts (while
   * queued, during a request — which is then aborted — or during backoff), otherwise the code of
   * the last attempt's failure. `opts.onSlotAcquired` runs once the call holds its semaphore slot,
   * just before the first request (the moment a queued generation starts running).
   */
  async generateImage(request: GenerateImageRequest, opts: GenerateImageOptions = {}): Promise<GeneratedImage> {
    const client = this.client;
    if (!client) throw new Error('GeminiService used before onModuleInit');
    const { signal, onSlotAcquired, client: caller } = opts;
    const waitStarted = performance.now();
    let release: () => void;
    try {
      release = await this.quota.acquire(caller, signal);
    } catch (error) {
      throw classifyGeminiError(error, { canceled: true });
    }
    this.metrics.recordSemaphoreWait((performance.now() - waitStarted) / 1000);
    try {
      onSlotAcquired?.();
      return await this.callWithRetries(client, request, signal);
    } finally {
      release();
    }
  }

  private async callWithRetries(client: GeminiClient, request: GenerateImageRequest, signal: AbortSignal | undefined): Promise<GeneratedImage> {
    const { model, timeoutMs, deadlineMs, maxRetries } = this.config.gemini;
    const deadline = performance.now() + deadlineMs;
    for (let attempt = 1; ; attempt++) {
      try {
        // Past any 429 pause and within the per-minute rate, shared by every instance with Redis.
        const waited = await this.quota.beforeRequest(signal).catch((abort: unknown) => {
          throw classifyGeminiError(abort, { canceled: true });
        });
        // Every request, 0 included: the share of requests the quota held back shows, not only how long.
        this.metrics.recordQuotaWait(waited / 1000);
        const attemptMs = Math.min(timeoutMs, deadline - performance.now());
        if (waited > 0 && attemptMs < Math.min(MIN_ATTEMPT_MS, timeoutMs)) {
          throw new GeminiError('GEMINI_TIMEOUT', 'The Gemini quota held this call past its deadline');
        }
        const image = await this.attempt(client, request, model, attemptMs, signal);
        return { ...image, attempts: attempt, model };
      } catch (caught) {
        const error = caught as GeminiError;
        error.attempts = attempt;
        if (error.code === 'GEMINI_RATE_LIMITED') {
          // Gemini's quota is the key's, not this call's: every instance waits as long as it asks.
          const pauseMs = error.retryAfterMs ?? this.backoff.baseMs;
          this.metrics.recordQuotaPause();
          await this.quota.pause(pauseMs).catch((e: unknown) => this.logger.warn(`Could not pause the Gemini quota: ${String(e)}`));
        }
        if (!error.retryable || attempt > maxRetries) throw error;
        const delay = backoffDelayMs(attempt, error.retryAfterMs, this.backoff);
        if (performance.now() + delay + Math.min(MIN_ATTEMPT_MS, timeoutMs) > deadline) throw error;
        this.logger.warn(`Gemini attempt ${attempt} failed (${error.code}${error.status ? ` ${error.status}` : ''}); retrying in ${Math.round(delay)} ms`);
        try {
          await sleep(delay, undefined, { signal });
        } catch (abort) {
          const canceled = classifyGeminiError(abort, { canceled: true });
          canceled.attempts = attempt;
          throw canceled;
        }
      }
    }
  }

  /** One HTTP request, in its own CLIENT span (OpenTelemetry GenAI conventions). */
  private attempt(
    client: GeminiClient,
    request: GenerateImageRequest,
    model: string,
    timeoutMs: number,
    signal: AbortSignal | undefined,
  ): Promise<Omit<GeneratedImage, 'attempts' | 'model'>> {
    const attributes = {
      'gen_ai.operation.name': 'generate_content',
      'gen_ai.provider.name': 'gcp.gemini',
      'gen_ai.request.model': model,
      'gen_ai.output.type': 'image',
      ...geminiServerAttributes(this.endpoint?.baseUrl),
    };
    return withSpan(
      `generate_content ${model}`,
      attributes,
      async (span) => {
        const started = performance.now();
        const timeout = AbortSignal.timeout(Math.max(1, Math.ceil(timeoutMs)));
        const abortSignal = signal ? AbortSignal.any([signal, timeout]) : timeout;
        let errorType: string | undefined;
        try {
          const response = await client.generateContent({
            model,
            // The prompt alone, or the prompt followed by the reference images as inline parts.
            contents: request.images?.length
              ? [{ role: 'user', parts: [{ text: request.prompt }, ...request.images.map((i) => ({ inlineData: { mimeType: i.mimeType, data: i.data.toString('base64') } }))] }]
              : request.prompt,
            config: {
              responseModalities: ['IMAGE'],
              imageConfig: { aspectRatio: request.aspectRatio },
              abortSignal,
              // One attempt = one HTTP request; continuation hops would escape the timeout accounting.
              automaticContinuation: false,
            },
          });
          const usage = {
            inputTokens: response.usageMetadata?.promptTokenCount ?? 0,
            outputTokens: response.usageMetadata?.candidatesTokenCount ?? 0,
          };
          this.metrics.recordTokenUsage(model, 'input', usage.inputTokens);
          this.metrics.recordTokenUsage(model, 'output', usage.outputTokens);
          span.setAttributes({
            'gen_ai.usage.input_tokens': usage.inputTokens,
            'gen_ai.usage.output_tokens': usage.outputTokens,
            'gen_ai.response.finish_reasons': (response.candidates ?? []).map((c) => String(c.finishReason ?? 'unknown').toLowerCase()),
            ...(response.responseId ? { 'gen_ai.response.id': response.responseId } : {}),
            ...(response.modelVersion ? { 'gen_ai.response.model': response.modelVersion } : {}),
          });
          return { ...extractImage(response), usage };
        } catch (caught) {
          const error = classifyGeminiError(caught, {
            canceled: signal?.aborted,
            timedOut: timeout.aborted,
            apiKey: this.endpoint?.apiKey,
          });
          errorType = error.code;
          throw error;
        } finally {
          this.metrics.recordGenAiOperation(model, (performance.now() - started) / 1000, errorType);
        }
      },
      SpanKind.CLIENT,
    );
  }
}
