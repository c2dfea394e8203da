import { HttpStatus } from '@nestjs/common';

/**
 * An error that knows its HTTP answer. The global exception filter turns it into
 * `{ statusCode, code, message }`; `headers` (e.g. Retry-After) are sent with it.
 */
export class AppError extends Error {
  constructor(
    readonly status: HttpStatus,
    readonly code: string,
    message: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
    this.name = 'AppError';
  }
}
