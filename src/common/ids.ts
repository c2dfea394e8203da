import { randomBytes, randomInt } from 'node:crypto';

/**
 * Generation ids are UUIDv7 (RFC 9562 §5.7): a 48-bit Unix-millisecond timestamp, then random
 * bits, so ids sort by creation time and B-tree inserts stay at the right edge of the index.
 *
 * `rand_a` (12 bits) is used as a per-millisecond counter (RFC 9562 §6.2, method 1), seeded
 * randomly in its lower half, so ids made by this process are strictly increasing even within one
 * millisecond or when the wall clock steps back. On counter overflow the timestamp borrows the
 * next millisecond, which the RFC allows.
 */
const ID_PATTERN = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
const MAX_TIMESTAMP = 2 ** 48 - 1;
const COUNTER_MAX = 0xfff;
// Seeding below half leaves room for at least 2048 ids in the same millisecond.
const COUNTER_SEED_LIMIT = 0x800;

let lastMs = -1;
let counter = 0;

/** A new time-ordered id; `nowMs` is injectable for tests (default `Date.now()`). */
export function newGenerationId(nowMs: number = Date.now()): string {
  let ms = Math.max(0, Math.min(Math.trunc(nowMs), MAX_TIMESTAMP));
  if (ms <= lastMs) {
    ms = lastMs;
    counter += 1;
    if (counter > COUNTER_MAX) {
      ms += 1;
      counter = randomInt(COUNTER_SEED_LIMIT);
    }
  } else {
    counter = randomInt(COUNTER_SEED_LIMIT);
  }
  lastMs = ms;

  const bytes = randomBytes(16);
  // 48-bit big-endian timestamp; split because JS bit operators are 32-bit.
  const high = Math.floor(ms / 2 ** 16);
  bytes.writeUInt32BE(high, 0);
  bytes.writeUInt16BE(ms % 2 ** 16, 4);
  bytes[6] = 0x70 | (counter >> 8);
  bytes[7] = counter & 0xff;
  bytes[8] = (bytes[8] & 0x3f) | 0x80;

  const hex = bytes.toString('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

/**
 * True for exactly the ids `newGenerationId` makes: lowercase canonical UUIDv7 with the RFC 9562
 * variant. Lets the HTTP layer reject malformed ids without a database round trip.
 */
export function isGenerationId(value: unknown): value is string {
  return typeof value === 'string' && ID_PATTERN.test(value);
}

/** The creation time (Unix ms) embedded in a generation id. */
export function generationIdTimestamp(id: string): number {
  if (!isGenerationId(id)) throw new TypeError(`Not a generation id: ${JSON.stringify(id)}`);
  return parseInt(id.slice(0, 8) + id.slice(9, 13), 16);
}
