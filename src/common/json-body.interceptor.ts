import { CallHandler, ExecutionContext, HttpStatus, Injectable, NestInterceptor } from '@nestjs/common';
import type { Request } from 'express';
import type { Observable } from 'rxjs';
import { AppError } from './app-error';

/**
 * For routes whose body is a JSON document: a request whose body is not `application/json` (no
 * Content-Type, `text/plain`, a form) answers `415 UNSUPPORTED_MEDIA_TYPE`. The JSON parser leaves
 * such a body unread, so validation would otherwise report every field of an empty body as missing.
 * Runs after the guards: an unauthenticated request still gets its 401 first.
 */
@Injectable()
export class JsonBodyInterceptor implements NestInterceptor {
  intercept(context: ExecutionContext, next: CallHandler): Observable<unknown> {
    const req = context.switchToHttp().getRequest<Request>();
    if (!req.is('application/json')) {
      const sent = req.headers['content-type'];
      throw new AppError(
        HttpStatus.UNSUPPORTED_MEDIA_TYPE,
        'UNSUPPORTED_MEDIA_TYPE',
        `Send the body as JSON with Content-Type: application/json (${sent ? `got ${sent.slice(0, 100)}` : 'no Content-Type was sent'})`,
      );
    }
    return next.handle();
  }
}
