import { StringDecoder } from 'node:string_decoder';
import { GenerateContentParameters, GenerateContentResponse, GoogleGenAI } from '@google/genai';

/** The one SDK call GeminiService makes; tests hand in a fake through GEMINI_CLIENT_FACTORY. */
export interface GeminiClient {
  generateContent(params: GenerateContentParameters): Promise<GenerateContentResponse>;
}

export interface GeminiEndpoint {
  apiKey: string;
  /** Unset → Google's public endpoint. */
  baseUrl?: string;
}

export type GeminiClientFactory = (endpoint: GeminiEndpoint) => GeminiClient;

export const GEMINI_CLIENT_FACTORY = Symbol('GEMINI_CLIENT_FACTORY');

/**
 * The real client. SDK retries stay off (no `retryOptions`): GeminiService retries itself, inside
 * the semaphore slot and the call's deadline. `vertexai: false` so GOOGLE_GENAI_USE_VERTEXAI in
 * the environment cannot silently switch backends.
 */
export const createGenAiClient: GeminiClientFactory = ({ apiKey, baseUrl }) =>
  new GoogleGenAI({ apiKey, vertexai: false, httpOptions: { ...(baseUrl ? { baseUrl } : {}), fetch: fetchWithFastJson } }).models;

/**
 * The global fetch, but with a Response whose `json()` touches less fresh memory. The SDK reads
 * each answer with `json()`, and an answer carries its image as ≈ 1 MB of base64. undici's `json()`
 * first copies the whole body into one new buffer, then decodes that: here every megabyte of fresh
 * memory costs ≈ 4 ms of page faults, more than decoding or parsing it
 * (docs/capacity/cost-per-generation.md). This one decodes the body chunk by chunk as it arrives
 * (small strings, in V8's young generation) and parses their concatenation: one large string, as
 * `json()` makes too, and no large buffer. Same result as `Response.json()`: UTF-8 (a character
 * split across chunks included), malformed bytes become U+FFFD, a leading BOM is dropped, invalid
 * JSON throws a SyntaxError, and the body reads once.
 */
export const fetchWithFastJson = async (input: string | URL | Request, init?: RequestInit): Promise<Response> => {
  // With a fetch of its own the SDK no longer adds its dispatcher; keep what it did (see below).
  const withDispatcher = init && 'dispatcher' in init ? init : ({ ...init, dispatcher: NO_UNDICI_TIMEOUTS } as unknown as RequestInit);
  const response = await fetch(input, withDispatcher);
  Object.defineProperty(response, 'json', { value: () => readJson(response), configurable: true });
  return response;
};

async function readJson(response: Response): Promise<unknown> {
  if (response.bodyUsed) throw new TypeError('Body is unusable: Body has already been read');
  const decoder = new StringDecoder('utf8');
  const parts: string[] = [];
  // Iterating locks and consumes the stream, as `json()` would.
  for await (const chunk of response.body ?? []) parts.push(decoder.write(chunk));
  parts.push(decoder.end());
  const text = parts.join('');
  return JSON.parse(text.charCodeAt(0) === 0xfeff ? text.slice(1) : text);
}

const UNDICI_GLOBAL_DISPATCHER = Symbol.for('undici.globalDispatcher.1');

interface UndiciDispatcher {
  dispatch(options: Record<string, unknown>, handler: unknown): boolean;
}

/**
 * What the SDK sends each request through when it uses its own fetch: undici's global dispatcher
 * with undici's own 300 s header and body timeouts off, so GEMINI_TIMEOUT_MS (up to 600 s, enforced
 * by the SDK's abort signal) is the only deadline, and a slow answer fails GEMINI_TIMEOUT, not as a
 * retried network error.
 */
export const NO_UNDICI_TIMEOUTS: UndiciDispatcher = {
  dispatch(options, handler) {
    const globals = globalThis as unknown as Record<symbol, UndiciDispatcher | undefined>;
    if (!globals[UNDICI_GLOBAL_DISPATCHER]) new Headers(); // Node creates it lazily, on first use of its fetch classes
    const global = globals[UNDICI_GLOBAL_DISPATCHER];
    if (!global) throw new Error('undici global dispatcher is not available');
    return global.dispatch({ ...options, headersTimeout: 0, bodyTimeout: 0 }, handler);
  },
};
