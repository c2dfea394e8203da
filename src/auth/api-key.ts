import { createHash, timingSafeEqual } from 'node:crypto';
import type { Request } from 'express';
import type { ApiKeyEntry } from '../config/api-keys';

/** The API key a request presents: `x-api-key`, or `Authorization: Bearer <key>`. */
export function presentedKey(req: Request): string | undefined {
  const header = req.headers['x-api-key'];
  if (typeof header === 'string' && header.length > 0) return header;
  const auth = req.headers.authorization;
  const match = typeof auth === 'string' ? /^Bearer\s+(\S+)$/i.exec(auth) : null;
  return match?.[1];
}

const digest = (s: string) => createHash('sha256').update(s).digest();

/**
 * The configured entry whose key is `key`, or undefined. Constant time in the key's content: every
 * entry is compared (hashing first makes the lengths equal), whichever matches.
 */
export function findKey(key: string, keys: readonly ApiKeyEntry[]): ApiKeyEntry | undefined {
  const presented = digest(key);
  let found: ApiKeyEntry | undefined;
  for (const entry of keys) if (timingSafeEqual(presented, digest(entry.key))) found ??= entry;
  return found;
}
