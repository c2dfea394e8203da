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
  new GoogleGenAI({ apiKey, vertexai: false, httpOptions: baseUrl ? { baseUrl } : undefined }).models;
