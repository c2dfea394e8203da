export type GeminiErrorCode =
  | 'GEMINI_TIMEOUT'
  | 'GEMINI_RATE_LIMITED'
  | 'GEMINI_BLOCKED'
  | 'GEMINI_NO_IMAGE'
  | 'GEMINI_ERROR'
  | 'CANCELED';

/** A failed Gemini call, with the code the generation reports and whether another attempt may help. */
export class GeminiError extends Error {
  readonly retryable: boolean;
  /** HTTP status of Gemini's answer, when there was one. */
  readonly status?: number;
  /** The server's retry hint (`google.rpc.RetryInfo`), when it gave one. */
  readonly retryAfterMs?: number;
  /** Attempts made before giving up (set by GeminiService). */
  attempts?: number;

  constructor(
    readonly code: GeminiErrorCode,
    message: string,
    details: { retryable?: boolean; status?: number; retryAfterMs?: number; cause?: unknown } = {},
  ) {
    super(message, details.cause === undefined ? undefined : { cause: details.cause });
    this.name = 'GeminiError';
    this.retryable = details.retryable ?? false;
    this.status = details.status;
    this.retryAfterMs = details.retryAfterMs;
  }
}

/** What the caller knows about why the request ended, which the error itself cannot tell. */
export interface ClassifyContext {
  /** Our per-attempt timeout (or the overall deadline) fired. */
  timedOut?: boolean;
  /** The caller's signal fired. */
  canceled?: boolean;
  /** Redacted from every message, in case a proxy or error echoes it. */
  apiKey?: string;
}

const NETWORK_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ECONNABORTED',
  'EPIPE',
  'ETIMEDOUT',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'UND_ERR_SOCKET',
  'UND_ERR_CONNECT_TIMEOUT',
  'UND_ERR_HEADERS_TIMEOUT',
  'UND_ERR_BODY_TIMEOUT',
  'UND_ERR_CLOSED',
]);
const MAX_MESSAGE = 500;

function causes(error: unknown): unknown[] {
  const chain: unknown[] = [];
  for (let e = error; e && chain.length < 5; e = (e as { cause?: unknown }).cause) chain.push(e);
  return chain;
}

function isNetworkError(error: unknown): boolean {
  return causes(error).some((e) => {
    const { code, message, name } = e as { code?: unknown; message?: unknown; name?: unknown };
    if (typeof code === 'string' && NETWORK_CODES.has(code)) return true;
    // undici reports a dropped connection as TypeError('fetch failed') or 'terminated'.
    return name === 'TypeError' && (message === 'fetch failed' || message === 'terminated');
  });
}

interface GoogleErrorBody {
  error?: { message?: string; status?: string; details?: { '@type'?: string; retryDelay?: string }[] };
}

/** The SDK's ApiError carries the answer's JSON body as its message; headers are not kept. */
function parseErrorBody(message: string): GoogleErrorBody | undefined {
  try {
    const body = JSON.parse(message) as unknown;
    return body && typeof body === 'object' ? (body as GoogleErrorBody) : undefined;
  } catch {
    return undefined;
  }
}

function retryDelayMs(body: GoogleErrorBody | undefined): number | undefined {
  const info = body?.error?.details?.find((d) => d?.['@type']?.endsWith('google.rpc.RetryInfo'));
  const match = /^(\d+(?:\.\d+)?)s$/.exec(info?.retryDelay ?? '');
  return match ? Math.round(Number(match[1]) * 1000) : undefined;
}

export function redact(text: string, apiKey: string | undefined): string {
  const clean = apiKey && apiKey.length >= 4 ? text.split(apiKey).join('[redacted]') : text;
  return clean.length > MAX_MESSAGE ? `${clean.slice(0, MAX_MESSAGE)}…` : clean;
}

/**
 * Maps whatever a Gemini call threw (the SDK's `ApiError` with `.status`, an AbortError, a network
 * failure) to a GeminiError. Retryable: 429, 5xx and network errors. Timeouts are not: the
 * contract retries 429/5xx/network errors only, and an attempt that used the whole timeout has
 * already spent most of the caller's patience.
 */
export function classifyGeminiError(error: unknown, context: ClassifyContext = {}): GeminiError {
  if (error instanceof GeminiError) return error;
  const say = (text: string) => redact(text, context.apiKey);
  const name = (error as { name?: unknown })?.name;
  const rawMessage = String((error as { message?: unknown })?.message ?? error);

  if (context.canceled) return new GeminiError('CANCELED', 'The Gemini call was canceled by the caller', { cause: error });
  if (context.timedOut || name === 'TimeoutError') {
    return new GeminiError('GEMINI_TIMEOUT', 'Gemini did not answer within the timeout; the request was aborted', { cause: error });
  }
  if (name === 'AbortError') return new GeminiError('CANCELED', 'The Gemini call was aborted', { cause: error });

  const status = (error as { status?: unknown })?.status;
  if (typeof status === 'number') {
    const body = parseErrorBody(rawMessage);
    const detail = body?.error ? `${body.error.status ?? ''} ${body.error.message ?? ''}`.trim() : rawMessage;
    const retryAfterMs = retryDelayMs(body);
    const message = say(`Gemini answered ${status}: ${detail}`);
    if (status === 429) return new GeminiError('GEMINI_RATE_LIMITED', message, { retryable: true, status, retryAfterMs, cause: error });
    return new GeminiError('GEMINI_ERROR', message, { retryable: status >= 500, status, retryAfterMs, cause: error });
  }
  if (isNetworkError(error)) {
    const codes = causes(error)
      .map((e) => (e as { code?: unknown }).code)
      .filter((c) => typeof c === 'string');
    return new GeminiError('GEMINI_ERROR', say(`Could not reach Gemini: ${rawMessage}${codes.length ? ` (${codes.join(', ')})` : ''}`), {
      retryable: true,
      cause: error,
    });
  }
  return new GeminiError('GEMINI_ERROR', say(`Gemini call failed: ${rawMessage}`), { cause: error });
}
