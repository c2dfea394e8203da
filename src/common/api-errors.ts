import { applyDecorators } from '@nestjs/common';
import { ApiResponse } from '@nestjs/swagger';
import type { HeaderObject, SchemaObject } from '@nestjs/swagger';

/**
 * Error answers as the OpenAPI document shows them: for each status an operation can answer, the
 * exact `{ statusCode, code, message }` body with `statusCode` fixed and `code` one of the codes
 * listed. The lists are merged from the groups below and the route's own codes; the contract test
 * (test/e2e/openapi-contract.e2e-spec.ts) checks real answers against them and that every code the
 * source throws appears in the document.
 */
export type ErrorStatus = 400 | 401 | 404 | 409 | 413 | 415 | 429 | 500 | 503;
export type ErrorCodes = Partial<Record<ErrorStatus, readonly string[]>>;

/** Every route under /api: the API key guard and the per-client rate limit run first. */
export const PROTECTED_ROUTE_ERRORS: ErrorCodes = {
  401: ['API_KEY_REQUIRED', 'INVALID_API_KEY'],
  429: ['RATE_LIMITED'],
};

/** A route whose body is JSON (body parser, JsonBodyInterceptor, validation). */
export const JSON_BODY_ERRORS: ErrorCodes = {
  400: ['VALIDATION_FAILED', 'INVALID_JSON'],
  413: ['PAYLOAD_TOO_LARGE'],
  415: ['UNSUPPORTED_MEDIA_TYPE', 'UNSUPPORTED_ENCODING', 'UNSUPPORTED_CHARSET'],
};

/** A route that reads or writes generation records (src/database/database.errors.ts). */
export const DATABASE_ERRORS: ErrorCodes = {
  503: ['DATABASE_BUSY', 'DATABASE_FULL', 'DATABASE_CORRUPT', 'DATABASE_UNAVAILABLE'],
};

/** What each code means, for the descriptions. */
const MEANING: Record<string, string> = {
  VALIDATION_FAILED: 'a field is missing, of the wrong type or out of range, or an unknown field was sent',
  INVALID_JSON: 'the body is not valid JSON',
  INVALID_CURSOR: 'the cursor is not a `nextCursor` this service issued',
  INVALID_MULTIPART: 'the multipart body is malformed',
  IMAGE_REQUIRED: 'no file in the multipart field `image`',
  API_KEY_REQUIRED: 'no key in `x-api-key` or `Authorization: Bearer`',
  INVALID_API_KEY: 'the key is not one of API_KEYS',
  GENERATION_NOT_FOUND: "no generation with this id (another key's generation answers the same)",
  IMAGE_NOT_FOUND: 'the generation has no image at this index',
  GENERATION_FINISHED: 'the generation already succeeded, failed or was canceled',
  PAYLOAD_TOO_LARGE: 'the body is over its limit (64 kB of JSON; a 20 MB image)',
  IMAGE_TOO_LARGE: 'over 100 M pixels, or more than PALETTE_MAX_DECODED_MB once decoded',
  UNSUPPORTED_MEDIA_TYPE: 'the body is not of the media type the route takes',
  UNSUPPORTED_ENCODING: 'an unknown Content-Encoding',
  UNSUPPORTED_CHARSET: 'a charset other than UTF-8',
  UNSUPPORTED_IMAGE: 'not a PNG, JPEG, WebP, AVIF, GIF or TIFF image that can be read',
  RATE_LIMITED: 'over RATE_LIMIT_PER_MINUTE requests of this key (or address) in the last minute',
  QUEUE_FULL: 'PIPELINE_MAX_QUEUE generations are waiting, or colour extraction is saturated',
  TOO_MANY_ACTIVE_GENERATIONS: 'this client has MAX_ACTIVE_GENERATIONS_PER_CLIENT generations queued or running',
  TOO_MANY_STREAMS: 'too many open event streams for this client (SSE_MAX_STREAMS_PER_CLIENT) or in all (SSE_MAX_STREAMS)',
  SHUTTING_DOWN: 'this instance is stopping; retry on another',
  UNKNOWN_REFERENCE: 'a reference id is not one of your references',
  OVERLOADED: 'this instance is saturated (event loop or palette queue) and refuses new work for a moment',
  QUEUE_UNAVAILABLE: 'the job queue (Redis) cannot be reached',
  DATABASE_BUSY: 'another process holds the database lock',
  DATABASE_FULL: "the database's disk is full",
  DATABASE_CORRUPT: 'the database file is damaged',
  DATABASE_UNAVAILABLE: 'the database cannot be read or written',
  STORAGE_ERROR: 'the image store cannot be reached',
  UPLOADS_BUSY: 'too many upload bytes in flight (UPLOAD_MAX_INFLIGHT_MB)',
  PALETTE_BUSY: 'the palette queue is full (PALETTE_MAX_QUEUE)',
  PALETTE_TIMEOUT: 'the palette task ran past PALETTE_TASK_TIMEOUT_MS',
  PALETTE_ERROR: 'the palette worker failed on this image',
};

const RETRY_AFTER: HeaderObject = { description: 'Seconds after which a retry may succeed', schema: { type: 'integer', minimum: 1 } };

/** Headers every answer of a status carries. */
const HEADERS: Partial<Record<ErrorStatus, Record<string, HeaderObject>>> = {
  401: { 'WWW-Authenticate': { description: '`Bearer`', required: true, schema: { type: 'string', enum: ['Bearer'] } } },
  429: { 'Retry-After': { ...RETRY_AFTER, required: true } },
  503: { 'Retry-After': { ...RETRY_AFTER, description: `${RETRY_AFTER.description} (not sent when retrying cannot help, e.g. DATABASE_CORRUPT)` } },
};

/** The body of an error answer with this status and one of these codes. */
export function errorSchema(status: number, codes: readonly string[]): SchemaObject {
  return {
    type: 'object',
    required: ['statusCode', 'code', 'message'],
    additionalProperties: false,
    properties: {
      statusCode: { type: 'integer', enum: [status] },
      code: { type: 'string', enum: [...codes], description: 'Machine-readable code' },
      message: { type: 'string', description: 'Human-readable explanation' },
    },
    example: { statusCode: status, code: codes[0], message: capitalize(MEANING[codes[0]] ?? codes[0]) },
  };
}

/** Merges error groups: the codes of each status, in order, once. */
export function mergeErrors(...groups: ErrorCodes[]): ErrorCodes {
  const merged: ErrorCodes = {};
  for (const group of groups) {
    for (const [status, codes] of Object.entries(group) as [`${ErrorStatus}`, readonly string[]][]) {
      const key = Number(status) as ErrorStatus;
      merged[key] = [...new Set([...(merged[key] ?? []), ...codes])];
    }
  }
  return merged;
}

/** Documents the error answers of an operation (see `errorSchema`), each code with its meaning. */
export function ApiErrors(...groups: ErrorCodes[]): MethodDecorator {
  const merged = mergeErrors(...groups);
  return applyDecorators(
    ...(Object.entries(merged) as [`${ErrorStatus}`, readonly string[]][]).map(([status, codes]) =>
      ApiResponse({
        status: Number(status),
        description: codes.map((code) => `\`${code}\`${MEANING[code] ? `: ${MEANING[code]}` : ''}`).join('; '),
        content: { 'application/json': { schema: errorSchema(Number(status), codes) } },
        ...(HEADERS[Number(status) as ErrorStatus] ? { headers: HEADERS[Number(status) as ErrorStatus] } : {}),
      }),
    ),
  );
}

function capitalize(text: string): string {
  return text.charAt(0).toUpperCase() + text.slice(1);
}
