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
  const response = await fetch(input, init);
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
