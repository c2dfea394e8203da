import { ATTR_SERVER_ADDRESS, ATTR_SERVER_PORT } from '@opentelemetry/semantic-conventions';

/** Where `@google/genai` sends requests when no base URL is given. */
export const GEMINI_PUBLIC_BASE_URL = 'https://generativelanguage.googleapis.com';

/**
 * `server.address` and `server.port` of the Gemini endpoint, for the GenAI client spans (recommended
 * by the GenAI semantic conventions): the host of GEMINI_BASE_URL (an emulator, a proxy) or of
 * Google's public endpoint, and its port (the scheme's default when the URL names none).
 */
export function geminiServerAttributes(baseUrl: string | undefined): { [ATTR_SERVER_ADDRESS]: string; [ATTR_SERVER_PORT]: number } {
  const url = new URL(baseUrl ?? GEMINI_PUBLIC_BASE_URL);
  const port = url.port !== '' ? Number(url.port) : url.protocol === 'http:' ? 80 : 443;
  // An IPv6 literal without its URL brackets, as the conventions write addresses.
  return { [ATTR_SERVER_ADDRESS]: url.hostname.replace(/^\[(.*)\]$/, '$1'), [ATTR_SERVER_PORT]: port };
}
