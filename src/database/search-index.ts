import { Kysely, PostgresAdapter } from 'kysely';
import type { PaletteColor } from '../common/generation.model';
import { deltaEOk, ItemKind, Oklab, ownerKindCode, rgbToOklab } from '../search/color-space';
import type { DatabaseSchema } from './database.schema';

/**
 * Writes of the search index, shared by the repositories of the searchable things (generations,
 * references) and migration 0004's backfill. One dialect-neutral write: a row in `search_items`
 * (its text), and per image a link to its palette in `search_palettes` (each distinct palette of
 * an owner stored once, its colours in `search_colors`, see `colorPoints`); each database keeps its
 * own index of them by itself (SQLite: FTS5 and R*Tree through triggers; PostgreSQL: generated
 * `tsvector` and `cube` columns with GIN and GiST indexes). Deleting the item deletes its links
 * (foreign key cascade) and the palettes no other item uses, with their colours and index entries.
 * Every write is idempotent, so a migration or a final write that runs twice changes nothing.
 */
export type Dialect = 'sqlite' | 'postgres';

/** Which database `db` talks to (Kysely's adapter is the one place that knows). */
export function dialectOf(db: Kysely<any>): Dialect {
  return db.getExecutor().adapter instanceof PostgresAdapter ? 'postgres' : 'sqlite';
}

export interface SearchDocument {
  kind: ItemKind;
  itemId: string;
  owner: string | null;
  createdAtMs: number;
  /** The text to index: a prompt, or a reference's title and tags. */
  body: string;
}

/** The palettes of an item: one per image (references have one, index 0). */
export interface IndexedPalette {
  imageIdx: number;
  palette: readonly PaletteColor[];
}

/** Most images of an item and colours per palette the index has room for (see the point ids). */
export const MAX_INDEXED_IMAGES = 4;
export const MAX_INDEXED_COLORS = 16;

/** A reference's searchable text: its title, then its tags. */
export function referenceBody(title: string | null, tags: readonly string[]): string {
  return [title ?? '', ...tags].filter((s) => s.length > 0).join('\n');
}

/** Adds the item (if absent) and its palettes' colours (those absent); returns its `item_key`. */
export async function indexItem(db: Kysely<DatabaseSchema>, doc: SearchDocument, palettes: readonly IndexedPalette[] = []): Promise<number> {
  const code = ownerKindCode(doc.owner, doc.kind);
  await db
    .insertInto('search_items')
    .values({ kind: doc.kind, item_id: doc.itemId, owner: doc.owner, code, created_at: doc.createdAtMs, body: doc.body })
    .onConflict((oc) => oc.columns(['kind', 'item_id']).doNothing())
    .execute();
  const { item_key } = await db
    .selectFrom('search_items')
    .select('item_key')
    .where('kind', '=', doc.kind)
    .where('item_id', '=', doc.itemId)
    .executeTakeFirstOrThrow();
  const key = Number(item_key);
  await insertColors(db, key, code, palettes);
  return key;
}

/** Adds the palettes of an item already indexed (a generation that just succeeded); false when it is not. */
export async function indexPalettes(db: Kysely<DatabaseSchema>, kind: ItemKind, itemId: string, palettes: readonly IndexedPalette[]): Promise<boolean> {
  const item = await db.selectFrom('search_items').select(['item_key', 'code']).where('kind', '=', kind).where('item_id', '=', itemId).executeTakeFirst();
  if (!item) return false;
  await insertColors(db, Number(item.item_key), Number(item.code), palettes);
  return true;
}

/** Removes the item, its links to palettes, and the palettes no other item has (with their index entries). */
export async function removeItem(db: Kysely<DatabaseSchema>, kind: ItemKind, itemId: string): Promise<void> {
  const item = await db.selectFrom('search_items').select('item_key').where('kind', '=', kind).where('item_id', '=', itemId).executeTakeFirst();
  if (!item) return;
  const palettes = await db.selectFrom('search_item_palettes').select('palette_key').where('item_key', '=', item.item_key).execute();
  await db.deleteFrom('search_items').where('item_key', '=', item.item_key).execute();
  if (palettes.length === 0) return;
  await db
    .deleteFrom('search_palettes')
    .where('palette_key', 'in', [...new Set(palettes.map((p) => Number(p.palette_key)))])
    .where(({ not, exists, selectFrom }) =>
      not(exists(selectFrom('search_item_palettes').select('search_item_palettes.item_key').whereRef('search_item_palettes.palette_key', '=', 'search_palettes.palette_key'))),
    )
    .execute();
}

/** Palette colours closer than this (ΔE_OK) are one colour for search (see `colorPoints`). */
export const MERGE_DISTANCE = 6;

/**
 * A palette as search sees it: its colours in OKLab, where colours closer than MERGE_DISTANCE are
 * merged into one (share-weighted mean, shares added), largest share first. A quantizer splits a
 * large noisy area into several near-identical entries (an image 80 % red can come out as three
 * reds of 27 % each); merged, the red is one point with its real share, which is what the share
 * coordinate of the index and the distance's weighting need.
 */
export function colorPoints(palette: readonly PaletteColor[]): { lab: Oklab; share: number }[] {
  const points: { lab: [number, number, number]; share: number }[] = [];
  for (const color of [...palette].sort((x, y) => y.proportion - x.proportion)) {
    if (!(color.proportion > 0)) continue;
    const lab = rgbToOklab(color.rgb);
    const near = points.find((p) => deltaEOk(p.lab, lab) < MERGE_DISTANCE);
    if (!near) {
      points.push({ lab: [lab[0], lab[1], lab[2]], share: color.proportion });
      continue;
    }
    const total = near.share + color.proportion;
    near.lab = [0, 1, 2].map((i) => (near.lab[i] * near.share + lab[i] * color.proportion) / total) as [number, number, number];
    near.share = total;
  }
  return points;
}

/** The text that identifies a palette's points (rounded as stored). */
function signatureOf(points: readonly { lab: Oklab; share: number }[]): string {
  return points.map((p) => [...p.lab, p.share].map((v) => v.toFixed(4)).join(',')).join(';');
}

const round4 = (v: number) => Math.round(v * 1e4) / 1e4;

/** Links each image of the item `itemKey` to its palette, adding the palette (and its colours) when new. */
export async function insertColors(db: Kysely<DatabaseSchema>, itemKey: number, code: number, palettes: readonly IndexedPalette[]): Promise<void> {
  for (const p of palettes) {
    if (!Number.isInteger(p.imageIdx) || p.imageIdx < 0 || p.imageIdx >= MAX_INDEXED_IMAGES) continue;
    const points = colorPoints(p.palette.slice(0, MAX_INDEXED_COLORS)).map((pt) => ({ lab: pt.lab.map(round4) as unknown as Oklab, share: round4(pt.share) }));
    if (points.length === 0) continue;
    const signature = signatureOf(points);
    await db.insertInto('search_palettes').values({ code, signature }).onConflict((oc) => oc.columns(['code', 'signature']).doNothing()).execute();
    const { palette_key } = await db.selectFrom('search_palettes').select('palette_key').where('code', '=', code).where('signature', '=', signature).executeTakeFirstOrThrow();
    const paletteKey = Number(palette_key);
    await db
      .insertInto('search_colors')
      .values(points.map(({ lab: [l, a, b], share }, colorIdx) => ({ palette_key: paletteKey, color_idx: colorIdx, l, a, b, share, code })))
      .onConflict((oc) => oc.columns(['palette_key', 'color_idx']).doNothing())
      .execute();
    await db
      .insertInto('search_item_palettes')
      .values({ item_key: itemKey, image_idx: p.imageIdx, palette_key: paletteKey })
      .onConflict((oc) => oc.columns(['item_key', 'image_idx']).doNothing())
      .execute();
  }
}

/**
 * Runs `fn` in a transaction: a new one, or `db` itself when it already is one (a repository built
 * on a transaction, as the batch loaders do), since Kysely does not nest them.
 */
export function inTransaction<T>(db: Kysely<DatabaseSchema>, fn: (trx: Kysely<DatabaseSchema>) => Promise<T>): Promise<T> {
  return db.isTransaction ? fn(db) : db.transaction().execute(fn);
}
