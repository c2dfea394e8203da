import { HttpStatus } from '@nestjs/common';
import { AppError } from '../common/app-error';

export type StorageErrorCode = 'STORAGE_ERROR' | 'NOT_FOUND' | 'INVALID_KEY';

const STATUS: Record<StorageErrorCode, HttpStatus> = {
  // The backing store is down or refused the call: the request may succeed later.
  STORAGE_ERROR: HttpStatus.SERVICE_UNAVAILABLE,
  NOT_FOUND: HttpStatus.NOT_FOUND,
  // Keys are built by the server (StorageService.keyFor), never taken from a request: a bad one is our bug.
  INVALID_KEY: HttpStatus.INTERNAL_SERVER_ERROR,
};

/**
 * Every failure of the storage layer. `message` is what the caller may see (HTTP answers, a
 * generation's `error.message`, readiness details): a fixed text, or one built from the storage
 * key only, never from what the driver threw, which names absolute paths, endpoints and buckets.
 * That goes to `detail` (secrets redacted by `redactSecrets`), for the server log only; the original
 * error stays available as `cause`.
 */
export class StorageError extends AppError {
  declare readonly code: StorageErrorCode;
  readonly detail: string;

  constructor(code: StorageErrorCode, message: string, options: { cause?: unknown; detail?: string } = {}) {
    super(STATUS[code], code, redactSecrets(message));
    this.name = 'StorageError';
    this.detail = redactSecrets(options.detail ?? message);
    if (options.cause !== undefined) this.cause = options.cause;
  }
}

const SECRET_PATTERNS: [RegExp, string][] = [
  // user:password@ in an endpoint URL
  [/(\w+:\/\/)[^/@\s]+@/g, '$1***@'],
  // presigned-URL query parameters and SigV4 Authorization header parts
  [/(X-Amz-(?:Credential|Signature|Security-Token)=)[^&\s]+/gi, '$1***'],
  [/((?:Credential|Signature)=)[^,\s&]+/g, '$1***'],
  // AWS access key ids (long-term AKIA…, temporary ASIA…)
  [/\b(?:AKIA|ASIA)[0-9A-Z]{16}\b/g, '***'],
];

export function redactSecrets(text: string): string {
  let out = text;
  for (const [pattern, replacement] of SECRET_PATTERNS) out = out.replace(pattern, replacement);
  return out.length > 500 ? `${out.slice(0, 500)}…` : out;
}

export function isStorageError(error: unknown, code?: StorageErrorCode): error is StorageError {
  return error instanceof StorageError && (code === undefined || error.code === code);
}
