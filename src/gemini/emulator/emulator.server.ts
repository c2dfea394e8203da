/**
 * A local stand-in for the Gemini API's `generateContent`, used by default (no `GEMINI_API_KEY`),
 * by the tests and by the load test. Plain `node:http`, no Nest, so it also runs on its own
 * (`npm run emulator`).
 *
 * Routes
 * - `POST /v1beta/models/{model}:generateContent` (also `/v1/` — what `@google/genai` v3 calls —
 *   and `/v1alpha/`). Needs an `x-goog-api-key` header (or `?key=`), any non-empty value, else 401.
 *   Reads the text parts of `contents` and `generationConfig.imageConfig.aspectRatio` and answers
 *   like Gemini 2.5 Flash Image: a PNG in `candidates[0].content.parts[].inlineData`, a text part
 *   too when `responseModalities` asks for TEXT, `usageMetadata` with 1290 output tokens per image.
 * - `GET /health` → 200. Anything else → 404. Errors use Google's shape
 *   `{ error: { code, message, status } }`.
 *
 * Pictures: deterministic PNGs at Gemini's sizes per aspect ratio (1:1 1024×1024, 3:4 864×1184,
 * 4:3 1184×864, 9:16 768×1344, 16:9 1344×768). Colour words (red, navy, light blue, …) and
 * `#rrggbb` in the prompt set the colours; the first one mentioned covers the largest area (60/30/10
 * for three). `solid` gives one flat colour; no colour word → colours from a hash of the prompt.
 * Same prompt and ratio → identical bytes; the last 64 PNGs are cached.
 *
 * Faults, deterministic per prompt (stripped before painting):
 * - `[emulator:hang]`          never answers; the request ends only when the client aborts it
 * - `[emulator:latency=MS]`    answers after MS milliseconds
 * - `[emulator:429]`, `[emulator:500]`, `[emulator:503]`   fail every time
 * - `[emulator:429x1]`, `[emulator:500x2]`, …              fail the first N requests with exactly
 *                                                          this prompt, then succeed
 * - `[emulator:block]`         `promptFeedback.blockReason: SAFETY`, no candidates
 * - `[emulator:text]`          a text-only answer (no image)
 * 429 and 503 answers carry `Retry-After: 1` and a `google.rpc.RetryInfo` detail (`retryDelay: "1s"`),
 * which is where the real API puts its retry hint.
 *
 * Faults as probabilities (for load tests): options `rate429`, `rate500`, `rate503`, `hangRate`,
 * `blockRate`, `textOnlyRate`, and `latency` (fixed, uniform or lognormal); `seed` makes the
 * sequence of rolls reproducible.
 */
import { randomBytes } from 'node:crypto';
import { createServer, IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { ASPECT_RATIOS, AspectRatio } from '../../common/generation.model';
import type { EmulatorFaultRates, LatencySpec } from '../../config/emulator-env';
import sharp from 'sharp';
import { FaultStatus, parsePrompt, PromptDirectives } from './emulator-directives';
import { PngCache } from './emulator-image';
import { normalSample, seededRandom } from './emulator-random';

export interface EmulatorOptions extends EmulatorFaultRates {
  host: string;
  /** 0 picks a free port. */
  port: number;
  latency: LatencySpec;
  /** Seed for the fault and latency rolls; undefined → a random seed. */
  seed: number | undefined;
  maxBodyBytes: number;
  /** How many rendered PNGs to keep. */
  cacheSize: number;
}

export const DEFAULT_EMULATOR_OPTIONS: EmulatorOptions = {
  host: '127.0.0.1',
  port: 0,
  latency: { kind: 'fixed', ms: 0 },
  seed: undefined,
  rate429: 0,
  rate500: 0,
  rate503: 0,
  hangRate: 0,
  blockRate: 0,
  textOnlyRate: 0,
  maxBodyBytes: 10 * 1024 * 1024,
  cacheSize: 64,
};

export type EmulatorOutcome = 'image' | 'text' | 'blocked' | 'hang' | 'fault' | 'rejected';

export interface EmulatorStats {
  /** `generateContent` requests received (any outcome). */
  requests: number;
  /** Requests being answered right now, and the most at once since start (or the last reset). */
  inFlight: number;
  maxInFlight: number;
  /** Requests whose client closed the connection before the answer was sent. */
  clientAborts: number;
  byStatus: Record<string, number>;
  byOutcome: Record<EmulatorOutcome, number>;
  byApiVersion: Record<string, number>;
  renders: number;
  cacheHits: number;
}

export interface GeminiEmulator {
  /** Base URL to give the SDK (`httpOptions.baseUrl`), e.g. `http://127.0.0.1:41234`. */
  url: string;
  port: number;
  options: EmulatorOptions;
  stats(): EmulatorStats;
  resetStats(): void;
  close(): Promise<void>;
}

const ROUTE = /^\/(v1|v1beta|v1alpha)\/models\/([^/]+):generateContent$/;
const IMAGE_TOKENS = 1290;
const MAX_TRACKED_PROMPTS = 10_000;
const RETRY_AFTER_SECONDS = 1;

const FAULTS: Record<FaultStatus, { status: string; message: string }> = {
  429: { status: 'RESOURCE_EXHAUSTED', message: 'Resource has been exhausted (e.g. check quota).' },
  500: { status: 'INTERNAL', message: 'An internal error has occurred. Please retry or report in https://developers.generativeai.google/guide/troubleshooting' },
  503: { status: 'UNAVAILABLE', message: 'The model is overloaded. Please try again later.' },
};

class HttpError extends Error {
  constructor(
    readonly code: number,
    readonly status: string,
    message: string,
  ) {
    super(message);
  }
}

function emptyStats(): EmulatorStats {
  return {
    requests: 0,
    inFlight: 0,
    maxInFlight: 0,
    clientAborts: 0,
    byStatus: {},
    byOutcome: { image: 0, text: 0, blocked: 0, hang: 0, fault: 0, rejected: 0 },
    byApiVersion: {},
    renders: 0,
    cacheHits: 0,
  };
}

function estimateTokens(text: string): number {
  return Math.max(1, Math.ceil(text.length / 4));
}

async function readBody(req: IncomingMessage, limit: number): Promise<string> {
  const declared = Number(req.headers['content-length']);
  if (declared > limit) throw new HttpError(413, 'INVALID_ARGUMENT', `Request payload size exceeds the limit: ${limit} bytes.`);
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > limit) throw new HttpError(413, 'INVALID_ARGUMENT', `Request payload size exceeds the limit: ${limit} bytes.`);
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}

interface GenerateRequest {
  prompt: string;
  aspectRatio: AspectRatio;
  wantsText: boolean;
  /** Image parts sent with the prompt (references), decoded from base64. */
  images: { mimeType: string; data: Buffer }[];
}

/** Image parts Gemini takes inline with a prompt; anything else is refused like Gemini does. */
const INLINE_IMAGE_TYPES = new Set(['image/png', 'image/jpeg', 'image/webp', 'image/heic', 'image/heif']);

function parseGenerateRequest(raw: string): GenerateRequest {
  let body: unknown;
  try {
    body = JSON.parse(raw);
  } catch {
    throw new HttpError(400, 'INVALID_ARGUMENT', 'Invalid JSON payload received.');
  }
  const { contents, generationConfig } = (body ?? {}) as {
    contents?: unknown;
    generationConfig?: { responseModalities?: unknown; imageConfig?: { aspectRatio?: unknown } };
  };
  const list = Array.isArray(contents) ? contents : contents === undefined ? [] : [contents];
  type Part = { text?: unknown; inlineData?: { mimeType?: unknown; data?: unknown } };
  const parts = list.flatMap((c: { parts?: Part[] }) => (Array.isArray(c?.parts) ? c.parts : []));
  const texts = parts.map((p) => p?.text).filter((t): t is string => typeof t === 'string');
  const images = parts.flatMap((p) => {
    const inline = p?.inlineData;
    if (!inline) return [];
    if (typeof inline.mimeType !== 'string' || !INLINE_IMAGE_TYPES.has(inline.mimeType) || typeof inline.data !== 'string') {
      throw new HttpError(400, 'INVALID_ARGUMENT', `Unsupported inline data: mimeType ${JSON.stringify(inline.mimeType)}.`);
    }
    return [{ mimeType: inline.mimeType, data: Buffer.from(inline.data, 'base64') }];
  });
  if (texts.length === 0) throw new HttpError(400, 'INVALID_ARGUMENT', '* GenerateContentRequest.contents: contents is not specified');
  const ratio = generationConfig?.imageConfig?.aspectRatio ?? '1:1';
  if (!ASPECT_RATIOS.includes(ratio as AspectRatio)) {
    throw new HttpError(400, 'INVALID_ARGUMENT', `Unsupported aspect ratio ${JSON.stringify(ratio)}; supported: ${ASPECT_RATIOS.join(', ')}.`);
  }
  const modalities = generationConfig?.responseModalities;
  // The real image model answers with text and image unless told IMAGE only.
  const wantsText = !Array.isArray(modalities) || modalities.some((m) => String(m).toUpperCase() === 'TEXT');
  return { prompt: texts.join('\n'), aspectRatio: ratio as AspectRatio, wantsText, images };
}

function sampleLatency(spec: LatencySpec, random: () => number): number {
  switch (spec.kind) {
    case 'fixed':
      return spec.ms;
    case 'uniform':
      return spec.minMs + random() * (spec.maxMs - spec.minMs);
    case 'lognormal':
      return Math.min(spec.maxMs, spec.medianMs * Math.exp(spec.sigma * normalSample(random)));
  }
}

/** Starts the emulator; resolves once it listens. */
export async function startGeminiEmulator(overrides: Partial<EmulatorOptions> = {}): Promise<GeminiEmulator> {
  const options: EmulatorOptions = { ...DEFAULT_EMULATOR_OPTIONS, ...overrides };
  const random = seededRandom(options.seed ?? randomBytes(4).readUInt32LE(0));
  const cache = new PngCache(options.cacheSize);
  const failuresByPrompt = new Map<string, number>();
  const hangsByPrompt = new Map<string, number>();
  const shutdown = new AbortController();
  // In-flight counts live outside `stats` so a reset mid-request cannot unbalance them.
  let inFlight = 0;
  let maxInFlight = 0;
  let stats = emptyStats();

  /** Picks this request's fault: an in-prompt directive wins over the random rates. */
  function decideFault(d: PromptDirectives, prompt: string): 'hang' | 'block' | 'text' | FaultStatus | undefined {
    if (d.hang && (d.hangTimes === undefined || countsThisTime(hangsByPrompt, prompt, d.hangTimes))) return 'hang';
    if (d.fail) return d.fail.status;
    if (d.block) return 'block';
    if (d.textOnly) return 'text';
    const roll = random();
    const table: [number, 'hang' | 'block' | 'text' | FaultStatus][] = [
      [options.hangRate, 'hang'],
      [options.rate429, 429],
      [options.rate500, 500],
      [options.rate503, 503],
      [options.blockRate, 'block'],
      [options.textOnlyRate, 'text'],
    ];
    let edge = 0;
    for (const [rate, fault] of table) {
      edge += rate;
      if (roll < edge) return fault;
    }
    return undefined;
  }

  /** True when the first-N-requests budget of `[emulator:NNNxN]` for this exact prompt is not used up. */
  function failsThisTime(prompt: string, times: number | undefined): boolean {
    return times === undefined || countsThisTime(failuresByPrompt, prompt, times);
  }

  /** True (and counted) while fewer than `times` requests with this exact prompt were counted in `seenBy`. */
  function countsThisTime(seenBy: Map<string, number>, prompt: string, times: number): boolean {
    const seen = seenBy.get(prompt) ?? 0;
    if (seen >= times) return false;
    if (!seenBy.has(prompt) && seenBy.size >= MAX_TRACKED_PROMPTS) seenBy.delete(seenBy.keys().next().value as string);
    seenBy.set(prompt, seen + 1);
    return true;
  }

  function send(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
    if (res.destroyed) return;
    const json = JSON.stringify(body);
    stats.byStatus[status] = (stats.byStatus[status] ?? 0) + 1;
    res.writeHead(status, { 'content-type': 'application/json; charset=UTF-8', 'content-length': Buffer.byteLength(json), ...headers });
    res.end(json);
  }

  function sendError(res: ServerResponse, code: number, status: string, message: string, headers: Record<string, string> = {}, details?: unknown[]): void {
    send(res, code, { error: { code, message, status, ...(details ? { details } : {}) } }, headers);
  }

  async function generate(req: IncomingMessage, res: ServerResponse, apiVersion: string, model: string, closed: AbortSignal): Promise<void> {
    stats.requests++;
    stats.byApiVersion[apiVersion] = (stats.byApiVersion[apiVersion] ?? 0) + 1;
    const key = req.headers['x-goog-api-key'] ?? new URL(req.url ?? '/', 'http://emulator').searchParams.get('key');
    if (!key) {
      stats.byOutcome.rejected++;
      throw new HttpError(401, 'UNAUTHENTICATED', 'Method doesn\'t allow unregistered callers. Please use an API key (x-goog-api-key header).');
    }
    let parsed: ReturnType<typeof parsePrompt>;
    let request: GenerateRequest;
    try {
      request = parseGenerateRequest(await readBody(req, options.maxBodyBytes));
      parsed = parsePrompt(request.prompt);
      if (parsed.unknown.length > 0) throw new HttpError(400, 'INVALID_ARGUMENT', `Unknown emulator directive ${parsed.unknown.join(', ')}.`);
    } catch (error) {
      stats.byOutcome.rejected++;
      throw error;
    }

    const fault = decideFault(parsed.directives, request.prompt);
    const waitUntil = AbortSignal.any([closed, shutdown.signal]);
    if (fault === 'hang') {
      stats.byOutcome.hang++;
      await new Promise((resolve) => waitUntil.addEventListener('abort', resolve, { once: true }));
      return;
    }
    const latency = parsed.directives.latencyMs ?? sampleLatency(options.latency, random);
    if (latency > 0) {
      try {
        await sleep(latency, undefined, { signal: waitUntil });
      } catch {
        return; // the client left (counted on close) or the emulator is shutting down
      }
    }

    const responseId = randomBytes(9).toString('base64url');
    const promptTokenCount = estimateTokens(parsed.text);
    if (typeof fault === 'number' && failsThisTime(request.prompt, parsed.directives.fail?.times)) {
      stats.byOutcome.fault++;
      const retry = fault === 500 ? undefined : (parsed.directives.retryAfterS ?? RETRY_AFTER_SECONDS);
      sendError(
        res,
        fault,
        FAULTS[fault].status,
        FAULTS[fault].message,
        retry ? { 'retry-after': String(retry) } : {},
        retry ? [{ '@type': 'type.googleapis.com/google.rpc.RetryInfo', retryDelay: `${retry}s` }] : undefined,
      );
      return;
    }
    if (fault === 'block') {
      stats.byOutcome.blocked++;
      send(res, 200, {
        promptFeedback: { blockReason: 'SAFETY', safetyRatings: [{ category: 'HARM_CATEGORY_DANGEROUS_CONTENT', probability: 'HIGH', blocked: true }] },
        usageMetadata: { promptTokenCount, totalTokenCount: promptTokenCount },
        modelVersion: model,
        responseId,
      });
      return;
    }
    const parts: Record<string, unknown>[] = [];
    let candidatesTokenCount = 0;
    if (fault === 'text') {
      const text = 'I can describe this picture, but I am not able to draw it right now.';
      parts.push({ text });
      candidatesTokenCount += estimateTokens(text);
      stats.byOutcome.text++;
    } else {
      if (request.wantsText) {
        const text = 'Here is the image you asked for.';
        parts.push({ text });
        candidatesTokenCount += estimateTokens(text);
      }
      // Reference images lead the picture: their dominant colours come first (the largest areas),
      // so a client can see that its references reached the model.
      const leading = await referenceColors(request.images);
      const png = await cache.get(leading.length > 0 ? `${leading.join(' ')} ${parsed.text}` : parsed.text, request.aspectRatio);
      parts.push({ inlineData: { mimeType: 'image/png', data: png.toString('base64') } });
      candidatesTokenCount += IMAGE_TOKENS;
      stats.byOutcome.image++;
    }
    send(res, 200, {
      candidates: [{ content: { role: 'model', parts }, finishReason: 'STOP', index: 0 }],
      usageMetadata: {
        promptTokenCount,
        candidatesTokenCount,
        totalTokenCount: promptTokenCount + candidatesTokenCount,
        promptTokensDetails: [{ modality: 'TEXT', tokenCount: promptTokenCount }],
      },
      modelVersion: model,
      responseId,
    });
  }

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = new URL(req.url ?? '/', 'http://emulator').pathname;
    if (req.method === 'GET' && path === '/health') return send(res, 200, { status: 'ok' });
    const route = ROUTE.exec(path);
    if (!route || req.method !== 'POST') throw new HttpError(404, 'NOT_FOUND', `${req.method} ${path} is not a Gemini API route this emulator serves.`);

    const closed = new AbortController();
    inFlight++;
    maxInFlight = Math.max(maxInFlight, inFlight);
    res.on('close', () => {
      inFlight--;
      if (!res.writableFinished) {
        stats.clientAborts++;
        closed.abort();
      }
    });
    await generate(req, res, route[1], decodeURIComponent(route[2]), closed.signal);
  }

  const server = createServer((req, res) => {
    handle(req, res).catch((error: unknown) => {
      if (error instanceof HttpError) sendError(res, error.code, error.status, error.message);
      else sendError(res, 500, 'INTERNAL', `Emulator failure: ${(error as Error)?.message ?? String(error)}`);
    });
  });
  // Node's default 300 s request timeout would cut `[emulator:hang]` and long latencies short:
  // as with the real API, the client decides when to give up.
  server.requestTimeout = 0;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  const host = options.host.includes(':') ? `[${options.host}]` : options.host;
  let closing: Promise<void> | undefined;

  return {
    url: `http://${host}:${port}`,
    port,
    options,
    stats: () => ({
      ...stats,
      inFlight,
      maxInFlight,
      byStatus: { ...stats.byStatus },
      byOutcome: { ...stats.byOutcome },
      byApiVersion: { ...stats.byApiVersion },
      renders: cache.renders,
      cacheHits: cache.hits,
    }),
    resetStats: () => {
      stats = emptyStats();
      maxInFlight = inFlight;
    },
    close: () => {
      closing ??= new Promise<void>((resolve) => {
        shutdown.abort();
        server.close(() => resolve());
        server.closeAllConnections();
      });
      return closing;
    },
  };
}

/** The dominant colour of each decodable reference image, as `#rrggbb`; an undecodable one is left out. */
async function referenceColors(images: { data: Buffer }[]): Promise<string[]> {
  const colors: string[] = [];
  for (const { data } of images) {
    try {
      const { dominant } = await sharp(data, { limitInputPixels: 50_000_000 }).stats();
      colors.push(`#${[dominant.r, dominant.g, dominant.b].map((v) => v.toString(16).padStart(2, '0')).join('')}`);
    } catch {
      // Gemini would answer about an unreadable image; the emulator simply paints without it.
    }
  }
  return colors;
}
