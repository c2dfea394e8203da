import { ExecutionContext, HttpStatus, Injectable } from '@nestjs/common';
import { ThrottlerGuard, ThrottlerLimitDetail } from '@nestjs/throttler';
import type { Request } from 'express';
import { AppError } from '../common/app-error';
import { keyFingerprint, presentedKey } from './api-key';

/**
 * Per-key rate limit on `/api/*` (per client address when no key is sent). Limits come from
 * `RATE_LIMIT_PER_MINUTE`; 0 turns it off (see AuthModule).
 */
@Injectable()
export class RateLimitGuard extends ThrottlerGuard {
  protected override async getTracker(req: Record<string, any>): Promise<string> {
    const key = presentedKey(req as Request);
    return key ? `key:${keyFingerprint(key)}` : `ip:${(req as Request).ip ?? 'unknown'}`;
  }

  protected override async shouldSkip(context: ExecutionContext): Promise<boolean> {
    return !context.switchToHttp().getRequest<Request>().path.startsWith('/api/');
  }

  protected override async throwThrottlingException(_context: ExecutionContext, detail: ThrottlerLimitDetail): Promise<void> {
    const retryAfter = Math.max(1, Math.ceil(detail.timeToBlockExpire || detail.timeToExpire));
    throw new AppError(HttpStatus.TOO_MANY_REQUESTS, 'RATE_LIMITED', `Rate limit of ${detail.limit} requests per minute exceeded`, {
      'Retry-After': String(retryAfter),
    });
  }
}
