import { timingSafeEqual, createHash } from 'node:crypto';
import type { Request } from 'express';

/** The API key a request presents: `x-api-key`, or `Authorization: Bearer <key>`. */
export function presentedKey(req: Request): string | undefined {
  const header = req.headers['x-api-key'];
  if (typeof header === 'string' && header.length > 0) return header;
  const auth = req.headers.authorization;
  const match = typeof auth === 'string' ? /^Bearer\s+(\S+)$/i.exec(auth) : null;
  return match?.[1];
}

const digest = (s: string) => createHash('sha256').update(s).digest();

/** Constant-time membership test (hashing first makes the lengths equal). */
export function isKnownKey(key: string, keys: readonly string[]): boolean {
  const presented = digest(key);
  let found = false;
  for (const k of keys) found = timingSafeEqual(presented, digest(k)) || found;
  return found;
}

/** A short, non-reversible label for a key (rate-limit buckets, logs): never the key itself. */
export function keyFingerprint(key: string): string {
  return digest(key).toString('hex').slice(0, 12);
}
