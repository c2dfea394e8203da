import { CanActivate, ExecutionContext, HttpStatus, Injectable } from '@nestjs/common';
import { Reflector } from '@nestjs/core';
import type { Request } from 'express';
import { AppError } from '../common/app-error';
import { AppConfig } from '../config/app-config';
import { findKey, presentedKey } from './api-key';
import { setPrincipal } from './principal';
import { IS_PUBLIC } from './public.decorator';

/**
 * Global guard: every route handler is protected unless it (or its controller) is `@Public()`. The
 * decision is made from the matched handler's metadata, so `/API/v1/...`, `/api//v1/...` or an
 * encoded path that Express routes to a handler is protected exactly like the canonical path.
 *
 * On a protected route it resolves the request's principal: with `API_KEYS` set, the owner is the
 * presented key's name (no key or an unknown one → 401); without keys, everything belongs to no key
 * and the client is identified by its address.
 */
@Injectable()
export class ApiKeyGuard implements CanActivate {
  constructor(
    private readonly config: AppConfig,
    private readonly reflector: Reflector,
  ) {}

  canActivate(context: ExecutionContext): boolean {
    if (this.reflector.getAllAndOverride<boolean>(IS_PUBLIC, [context.getHandler(), context.getClass()])) return true;
    const req = context.switchToHttp().getRequest<Request>();
    const keys = this.config.http.apiKeys;
    if (keys.length === 0) {
      setPrincipal(req, { owner: null, client: `ip:${req.ip ?? 'unknown'}` });
      return true;
    }
    const key = presentedKey(req);
    const entry = key ? findKey(key, keys) : undefined;
    if (entry) {
      setPrincipal(req, { owner: entry.name, client: `key:${entry.name}` });
      return true;
    }
    throw new AppError(
      HttpStatus.UNAUTHORIZED,
      key ? 'INVALID_API_KEY' : 'API_KEY_REQUIRED',
      key ? 'The API key is not valid' : 'Send an API key in the x-api-key header or as Authorization: Bearer <key>',
      { 'WWW-Authenticate': 'Bearer' },
    );
  }
}
