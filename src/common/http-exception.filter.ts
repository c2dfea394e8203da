import { ArgumentsHost, Catch, ExceptionFilter, HttpException, HttpStatus, Logger } from '@nestjs/common';
import type { Response } from 'express';
import { AppError } from './app-error';

/** Codes for Nest's and Express's own HTTP errors, by status. */
const CODE_BY_STATUS: Record<number, string> = {
  400: 'BAD_REQUEST',
  401: 'UNAUTHORIZED',
  403: 'FORBIDDEN',
  404: 'NOT_FOUND',
  405: 'METHOD_NOT_ALLOWED',
  406: 'NOT_ACCEPTABLE',
  409: 'CONFLICT',
  413: 'PAYLOAD_TOO_LARGE',
  415: 'UNSUPPORTED_MEDIA_TYPE',
  422: 'UNPROCESSABLE_ENTITY',
  429: 'RATE_LIMITED',
  503: 'SERVICE_UNAVAILABLE',
};

/** body-parser / raw-body error types (they carry `type` and `status`). */
const BODY_PARSER_CODES: Record<string, string> = {
  'entity.parse.failed': 'INVALID_JSON',
  'entity.too.large': 'PAYLOAD_TOO_LARGE',
  'encoding.unsupported': 'UNSUPPORTED_ENCODING',
  'charset.unsupported': 'UNSUPPORTED_CHARSET',
  'request.aborted': 'REQUEST_ABORTED',
};

interface ErrorBody {
  statusCode: number;
  code: string;
  message: string;
  [extra: string]: unknown;
}

/**
 * Turns every error into the contract's `{ statusCode, code, message }`. Unexpected errors become a
 * 500 whose message reveals nothing internal; they are logged with their stack.
 */
@Catch()
export class HttpExceptionFilter implements ExceptionFilter {
  private readonly logger = new Logger('HttpExceptionFilter');

  catch(exception: unknown, host: ArgumentsHost): void {
    const res = host.switchToHttp().getResponse<Response>();
    const { body, headers } = this.toBody(exception);
    if (res.headersSent) {
      // A streamed answer (SSE, image) already started: all we can do is end it.
      this.logger.warn(`Error after headers were sent: ${body.code} ${body.message}`);
      res.end();
      return;
    }
    for (const [name, value] of Object.entries(headers)) res.setHeader(name, value);
    res.status(body.statusCode).json(body);
  }

  private toBody(exception: unknown): { body: ErrorBody; headers: Record<string, string> } {
    if (exception instanceof AppError) {
      return { body: { statusCode: exception.status, code: exception.code, message: exception.message }, headers: exception.headers };
    }
    if (exception instanceof HttpException) {
      const status = exception.getStatus();
      // Express's adapter wraps body-parser errors (bad JSON, too large) into HttpExceptions; keep their precise code.
      const parserCode = BODY_PARSER_CODES[String((exception.cause as { type?: unknown } | undefined)?.type)];
      if (parserCode) {
        const message = parserCode === 'INVALID_JSON' ? 'The request body is not valid JSON' : exception.message;
        return { body: { statusCode: status, code: parserCode, message }, headers: {} };
      }
      const response = exception.getResponse();
      if (typeof response === 'object' && response !== null) {
        const r = response as Record<string, unknown>;
        // Terminus health answers keep their details next to the contract's fields.
        if (r.status === 'error' && typeof r.details === 'object') {
          return { body: { ...r, statusCode: status, code: 'NOT_READY', message: 'One or more dependencies are down' }, headers: {} };
        }
        const message = Array.isArray(r.message) ? r.message.join('; ') : String(r.message ?? exception.message);
        const code = typeof r.code === 'string' ? r.code : (CODE_BY_STATUS[status] ?? `HTTP_${status}`);
        return { body: { statusCode: status, code, message }, headers: {} };
      }
      return { body: { statusCode: status, code: CODE_BY_STATUS[status] ?? `HTTP_${status}`, message: String(response) }, headers: {} };
    }
    const e = exception as { type?: unknown; status?: unknown; statusCode?: unknown; message?: unknown } | undefined;
    const status = Number(e?.status ?? e?.statusCode);
    if (typeof e?.type === 'string' && status >= 400 && status < 500) {
      const code = BODY_PARSER_CODES[e.type] ?? CODE_BY_STATUS[status] ?? `HTTP_${status}`;
      const message = code === 'INVALID_JSON' ? 'The request body is not valid JSON' : String(e.message ?? 'Bad request');
      return { body: { statusCode: status, code, message }, headers: {} };
    }
    this.logger.error(`Unhandled error: ${String((exception as Error)?.message ?? exception)}`, (exception as Error)?.stack);
    return {
      body: { statusCode: HttpStatus.INTERNAL_SERVER_ERROR, code: 'INTERNAL_ERROR', message: 'Internal server error' },
      headers: {},
    };
  }
}
