import { CanActivate, ExecutionContext, HttpStatus, Injectable } from '@nestjs/common';
import type { Request } from 'express';
import { AppError } from '../common/app-error';
import { AppConfig } from '../config/app-config';
import { isKnownKey, presentedKey } from './api-key';

/**
 * Optional API-key auth for `/api/*` (health probes and docs stay open). Off when `API_KEYS` is empty,
 * which is the default for local use.
 */
@Injectable()
export class ApiKeyGuard implements CanActivate {
  constructor(private readonly config: AppConfig) {}

  canActivate(context: ExecutionContext): boolean {
    const keys = this.config.http.apiKeys;
    if (keys.length === 0) return true;
    const req = context.switchToHttp().getRequest<Request>();
    if (!req.path.startsWith('/api/')) return true;
    const key = presentedKey(req);
    if (key && isKnownKey(key, keys)) return true;
    throw new AppError(
      HttpStatus.UNAUTHORIZED,
      key ? 'INVALID_API_KEY' : 'API_KEY_REQUIRED',
      key ? 'The API key is not valid' : 'Send an API key in the x-api-key header or as Authorization: Bearer <key>',
      { 'WWW-Authenticate': 'Bearer' },
    );
  }
}
