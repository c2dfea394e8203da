import { ExecutionContext, HttpStatus, Injectable } from '@nestjs/common';
import { ThrottlerGuard, ThrottlerLimitDetail } from '@nestjs/throttler';
import type { Request } from 'express';
import { AppError } from '../common/app-error';
import { principalOf } from './principal';

/**
 * Per-client rate limit on every protected route (`RATE_LIMIT_PER_MINUTE`; 0 turns it off, see
 * AuthModule). It runs after ApiKeyGuard and counts by the principal's client: the key's name when
 * keys are configured, else the client address, so sending a fresh random key buys no new allowance.
 * The allowance is shared by all routes. Public routes (no principal) are never limited.
 */
@Injectable()
export class RateLimitGuard extends ThrottlerGuard {
  protected override async getTracker(req: Record<string, any>): Promise<string> {
    return principalOf(req as Request)!.client;
  }

  /** One allowance per client across every route (the default would give each route its own). */
  protected override generateKey(_context: ExecutionContext, tracker: string, throttlerName: string): string {
    return `${throttlerName}:${tracker}`;
  }

  protected override async shouldSkip(context: ExecutionContext): Promise<boolean> {
    return principalOf(context.switchToHttp().getRequest<Request>()) === undefined;
  }

  protected override async throwThrottlingException(_context: ExecutionContext, detail: ThrottlerLimitDetail): Promise<void> {
    const retryAfter = Math.max(1, Math.ceil(detail.timeToBlockExpire || detail.timeToExpire));
    throw new AppError(HttpStatus.TOO_MANY_REQUESTS, 'RATE_LIMITED', `Rate limit of ${detail.limit} requests per minute exceeded`, {
      'Retry-After': String(retryAfter),
    });
  }
}
