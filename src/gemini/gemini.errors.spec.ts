import { ApiError } from '@google/genai';
import { classifyGeminiError, GeminiError } from './gemini.errors';

function apiError(status: number, error: Record<string, unknown>): ApiError {
  return new ApiError({ message: JSON.stringify({ error: { code: status, ...error } }), status });
}

describe('classifyGeminiError', () => {
  it('429 → GEMINI_RATE_LIMITED, retryable, with the RetryInfo hint', () => {
    const error = classifyGeminiError(
      apiError(429, {
        status: 'RESOURCE_EXHAUSTED',
        message: 'Quota exceeded',
        details: [{ '@type': 'type.googleapis.com/google.rpc.RetryInfo', retryDelay: '1.5s' }],
      }),
    );
    expect(error).toMatchObject({ code: 'GEMINI_RATE_LIMITED', retryable: true, status: 429, retryAfterMs: 1500 });
    expect(error.message).toBe('Gemini answered 429: RESOURCE_EXHAUSTED Quota exceeded');
  });

  it('5xx → GEMINI_ERROR, retryable; 4xx → not retryable', () => {
    expect(classifyGeminiError(apiError(503, { status: 'UNAVAILABLE' }))).toMatchObject({ code: 'GEMINI_ERROR', retryable: true, status: 503 });
    expect(classifyGeminiError(apiError(500, { status: 'INTERNAL' }))).toMatchObject({ code: 'GEMINI_ERROR', retryable: true });
    expect(classifyGeminiError(apiError(400, { status: 'INVALID_ARGUMENT' }))).toMatchObject({ code: 'GEMINI_ERROR', retryable: false });
    expect(classifyGeminiError(apiError(403, { status: 'PERMISSION_DENIED' }))).toMatchObject({ code: 'GEMINI_ERROR', retryable: false });
  });

  it('keeps a non-JSON error body readable', () => {
    const error = classifyGeminiError(new ApiError({ message: 'upstream connect error', status: 502 }));
    expect(error).toMatchObject({ code: 'GEMINI_ERROR', retryable: true, retryAfterMs: undefined });
    expect(error.message).toBe('Gemini answered 502: upstream connect error');
  });

  it('an abort is CANCELED when the caller aborted and GEMINI_TIMEOUT when our timeout did', () => {
    const abort = new DOMException('This operation was aborted', 'AbortError');
    expect(classifyGeminiError(abort, { canceled: true })).toMatchObject({ code: 'CANCELED', retryable: false });
    expect(classifyGeminiError(abort, { timedOut: true })).toMatchObject({ code: 'GEMINI_TIMEOUT', retryable: false });
    expect(classifyGeminiError(abort, { canceled: true, timedOut: true }).code).toBe('CANCELED');
    expect(classifyGeminiError(new DOMException('signal timed out', 'TimeoutError')).code).toBe('GEMINI_TIMEOUT');
  });

  it('network failures are retryable GEMINI_ERRORs naming the socket error', () => {
    for (const code of ['ECONNREFUSED', 'ECONNRESET', 'UND_ERR_SOCKET']) {
      const error = classifyGeminiError(new TypeError('fetch failed', { cause: Object.assign(new Error(`boom ${code}`), { code }) }));
      expect(error).toMatchObject({ code: 'GEMINI_ERROR', retryable: true });
      expect(error.message).toContain(code);
    }
    expect(classifyGeminiError(new TypeError('terminated'))).toMatchObject({ code: 'GEMINI_ERROR', retryable: true });
  });

  it('anything else is a non-retryable GEMINI_ERROR, and GeminiErrors pass through', () => {
    expect(classifyGeminiError(new Error('Cannot read properties of undefined'))).toMatchObject({ code: 'GEMINI_ERROR', retryable: false });
    const own = new GeminiError('GEMINI_BLOCKED', 'blocked');
    expect(classifyGeminiError(own)).toBe(own);
  });

  it('redacts the API key from messages', () => {
    const key = 'AIzaSyExampleKey0123456789';
    const fromBody = classifyGeminiError(apiError(400, { message: `API key ${key} not valid`, status: 'INVALID_ARGUMENT' }), { apiKey: key });
    const fromNetwork = classifyGeminiError(new TypeError('fetch failed', { cause: new Error(`https://x/?key=${key}`) }), { apiKey: key });
    const other = classifyGeminiError(new Error(`weird ${key}`), { apiKey: key });
    for (const error of [fromBody, fromNetwork, other]) {
      expect(error.message).not.toContain(key);
    }
    expect(fromBody.message).toContain('[redacted]');
  });
});
