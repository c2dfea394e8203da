import type { SelectQueryBuilder } from 'kysely';
import { InvalidCursorError } from './database.errors';

/** The sort key of one history item: newest first by creation time, then by id. */
export interface CursorKey {
  createdAt: number;
  id: string;
}

const MAX_CURSOR_LENGTH = 400;
// Ids up to 200 characters without whitespace or ':' (generous for any id shape, tight enough to
// refuse junk before it reaches SQL).
const KEY_PATTERN = /^(0|[1-9]\d{0,15}):([^\s:]{1,200})$/;

/** Opaque to clients: base64url of `<createdAtMs>:<id>`. */
export function encodeCursor(key: CursorKey): string {
  return Buffer.from(`${key.createdAt}:${key.id}`, 'utf8').toString('base64url');
}

/** Decodes a cursor made by `encodeCursor`; anything else throws `InvalidCursorError`. */
export function decodeCursor(cursor: string): CursorKey {
  if (cursor.length === 0 || cursor.length > MAX_CURSOR_LENGTH || !/^[A-Za-z0-9_-]+$/.test(cursor)) {
    throw new InvalidCursorError();
  }
  const text = Buffer.from(cursor, 'base64url').toString('utf8');
  // Re-encoding catches what Node's lenient decoder lets through: stray trailing bits, bad UTF-8.
  if (Buffer.from(text, 'utf8').toString('base64url') !== cursor) throw new InvalidCursorError();
  const match = KEY_PATTERN.exec(text);
  if (!match) throw new InvalidCursorError();
  const createdAt = Number(match[1]);
  if (!Number.isSafeInteger(createdAt)) throw new InvalidCursorError();
  return { createdAt, id: match[2] };
}

/**
 * One page, newest first by (created_at, id), of `query` (already filtered, e.g. by owner): keyset
 * paging, so a page costs the same however deep it is and rows inserted meanwhile neither repeat nor
 * shift later pages. Throws `InvalidCursorError` for a cursor `encodeCursor` did not make. Shared by
 * every history-like list (generations, references).
 */
export async function pageNewestFirst<Row, Item extends { createdAt: Date; id: string }>(
  // Any table with `created_at` and `id` columns; the callers' own builders keep their row types.
  query: SelectQueryBuilder<any, any, Row>,
  { limit, cursor }: { limit: number; cursor?: string },
  toItem: (row: Row) => Item,
): Promise<{ items: Item[]; nextCursor: string | null }> {
  let page = query.orderBy('created_at', 'desc').orderBy('id', 'desc').limit(limit + 1);
  if (cursor !== undefined) {
    const after = decodeCursor(cursor);
    page = page.where(({ eb, refTuple, tuple }) => eb(refTuple('created_at', 'id'), '<', tuple(after.createdAt, after.id)));
  }
  const rows = await page.execute();
  const items = rows.slice(0, limit).map(toItem);
  const last = items.at(-1);
  const nextCursor = rows.length > limit && last ? encodeCursor({ createdAt: last.createdAt.getTime(), id: last.id }) : null;
  return { items, nextCursor };
}
