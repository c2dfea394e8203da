import { Inject, Injectable } from '@nestjs/common';
import { Expression, ExpressionBuilder, RawBuilder, sql, SqlBool } from 'kysely';
import { CODE_SCALE, codeRange, indexCoordinates, ItemKind, Oklab } from '../search/color-space';
import type { WeightedColor } from '../search/palette-distance';
import { Phrase, TextQuery, toFts5 } from '../search/text-query';
import { Database, KYSELY } from './database';
import type { DatabaseSchema } from './database.schema';
import type { Owner } from './generations.repository';
import { Dialect, dialectOf } from './search-index';

/** One searchable item, as the index knows it. */
export interface SearchItemRef {
  itemKey: number;
  kind: ItemKind;
  itemId: string;
  createdAtMs: number;
}

export interface TextHit {
  itemKey: number;
  createdAtMs: number;
  /** Lower is better: bm25 (SQLite) or −ts_rank (PostgreSQL); comparable within one query only. */
  order: number;
}

/** An item with the palette of each of its images (references: one, index 0). */
export interface ItemPalettes extends SearchItemRef {
  palettes: Map<number, number>;
}

/** One image of an item and its palette. */
export interface ItemImage extends SearchItemRef {
  imageIdx: number;
  paletteKey: number;
}

/** Largest radius the nearest-point search widens to, in index units (covers the whole space). */
const MAX_RADIUS = 4096;
/** First radius (index units: 0.1 ΔE_OK): dense enough palettes answer at once. */
const FIRST_RADIUS = 16;

function ownedBy(owner: Owner) {
  return (eb: ExpressionBuilder<DatabaseSchema, 'search_items'>) => (owner === null ? eb('search_items.owner', 'is', null) : eb('search_items.owner', '=', owner));
}

/**
 * The read side of the search index (see migration 0004 and search-index.ts): ranked text matches,
 * nearest palette colours, and the palettes of candidate items, always within one owner's items.
 * Written per dialect where the two databases differ (FTS5 / `tsvector`, R*Tree / `cube`).
 */
@Injectable()
export class SearchRepository {
  private readonly dialect: Dialect;

  constructor(@Inject(KYSELY) private readonly db: Database) {
    this.dialect = dialectOf(db);
  }

  /**
   * `column IN keys`: on PostgreSQL one array parameter (`= any($1)`), which a thousand keys do not
   * slow down the way a thousand parameters do; on SQLite a plain list.
   */
  private keyIn(column: string, keys: readonly number[]): Expression<SqlBool> {
    const unique = [...new Set(keys)];
    return this.dialect === 'postgres' ? sql<SqlBool>`${sql.ref(column)} = any(${unique}::bigint[])` : sql<SqlBool>`${sql.ref(column)} in (${sql.join(unique)})`;
  }

  /**
   * The best `limit` items of `owner` (of `kinds`) matching `query`, best first (ties: newer
   * first). With `among`, only those items are considered (no limit applies then).
   */
  async text(query: TextQuery, opts: { owner: Owner; kinds: readonly ItemKind[]; limit: number; among?: readonly number[] }): Promise<TextHit[]> {
    if (query.groups.length === 0 || opts.among?.length === 0) return [];
    let q = this.db
      .selectFrom('search_items')
      // Only what ranking needs: a hybrid search ranks a thousand of these; ids are read for the page.
      .select(['search_items.item_key', 'search_items.created_at'])
      .where(ownedBy(opts.owner))
      .where('search_items.kind', 'in', [...opts.kinds]);
    if (opts.among) q = q.where(this.keyIn('search_items.item_key', opts.among));
    let ranked;
    if (this.dialect === 'postgres') {
      const tsquery = toTsquery(query);
      ranked = q
        .select(sql<number>`-ts_rank(search_items.tsv, ${tsquery}, 1)`.as('score'))
        .where(sql<SqlBool>`search_items.tsv @@ ${tsquery}`);
    } else {
      const match = toFts5(query)!;
      ranked = q
        .innerJoin(sql<{ rowid: number }>`search_text`.as('search_text'), (join) => join.onRef(sql.ref('search_text.rowid') as never, '=', 'search_items.item_key'))
        .select(sql<number>`bm25(search_text)`.as('score'))
        .where(sql<SqlBool>`search_text match ${match}`);
    }
    ranked = ranked.orderBy('score').orderBy('search_items.created_at', 'desc').orderBy('search_items.item_key', 'desc');
    if (!opts.among) ranked = ranked.limit(opts.limit);
    const rows = await ranked.execute();
    return rows.map((r) => ({ itemKey: Number(r.item_key), createdAtMs: Number(r.created_at), order: Number(r.score) }));
  }

  /**
   * Keys of the palettes of `owner`'s items (of `kinds`) owning the `k` colours nearest to (`lab`,
   * `share`) in the index (OKLab and share, see color-space.ts), nearest first, each palette once.
   */
  async nearestPalettes(lab: Oklab, share: number, opts: { owner: Owner; kinds: readonly ItemKind[]; k: number }): Promise<number[]> {
    const [lo, hi] = codeRange(opts.owner, opts.kinds);
    const point = indexCoordinates(lab, share);
    const ids = this.dialect === 'postgres' ? await this.nearestPostgres(point, lo, hi, opts.k) : await this.nearestSqlite(point, lo, hi, opts.k);
    return [...new Set(ids.map((id) => Math.floor(id / 16)))];
  }

  /** GiST nearest-neighbour scan (`<->`) on the cube column; the caller's code comes nearest. */
  private async nearestPostgres(point: number[], lo: number, hi: number, k: number): Promise<number[]> {
    const code = ((lo + hi) / 2) * CODE_SCALE;
    const target = sql`cube(array[${point[0]}, ${point[1]}, ${point[2]}, ${point[3]}, ${code}]::float8[])`;
    const { rows } = await sql<{ id: string | number }>`
      select palette_key * 16 + color_idx as id from search_colors
      where code between ${lo} and ${hi}
      order by point <-> ${target}
      limit ${k}`.execute(this.db);
    return rows.map((r) => Number(r.id));
  }

  /**
   * The R*Tree answers boxes, not nearest neighbours: a box around the point is widened (×2) until
   * the ball inside it holds `k` points; SQLite orders the box's points by distance itself (no row
   * reaches JavaScript but the `k` kept), so those `k` are the exact nearest (in the index's
   * integer coordinates).
   */
  private async nearestSqlite(point: number[], lo: number, hi: number, k: number): Promise<number[]> {
    const [l, a, b, s] = point;
    for (let r = FIRST_RADIUS; ; r *= 2) {
      const { rows } = await sql<{ id: number; d2: number }>`
        select id, (l0 - ${l}) * (l0 - ${l}) + (a0 - ${a}) * (a0 - ${a}) + (b0 - ${b}) * (b0 - ${b}) + (s0 - ${s}) * (s0 - ${s}) as d2
        from search_color_index
        where l1 >= ${l - r} and l0 <= ${l + r}
          and a1 >= ${a - r} and a0 <= ${a + r}
          and b1 >= ${b - r} and b0 <= ${b + r}
          and s1 >= ${s - r} and s0 <= ${s + r}
          and c1 >= ${lo} and c0 <= ${hi}
        order by d2, id
        limit ${k}`.execute(this.db);
      const within = rows.filter((row) => Number(row.d2) <= r * r);
      if (within.length >= k || r >= MAX_RADIUS) return within.map((row) => Number(row.id));
    }
  }

  /** The colours of each palette in `paletteKeys`, by key (largest share first). */
  async paletteColors(paletteKeys: readonly number[]): Promise<Map<number, WeightedColor[]>> {
    const colors = new Map<number, WeightedColor[]>();
    if (paletteKeys.length === 0) return colors;
    const rows = await this.db
      .selectFrom('search_colors')
      .select(['palette_key', 'l', 'a', 'b', 'share'])
      .where(this.keyIn('palette_key', paletteKeys))
      .orderBy('palette_key')
      .orderBy('color_idx')
      .execute();
    for (const row of rows) {
      const key = Number(row.palette_key);
      const list = colors.get(key) ?? [];
      list.push({ lab: [Number(row.l), Number(row.a), Number(row.b)], weight: Number(row.share) });
      colors.set(key, list);
    }
    return colors;
  }

  /**
   * Items of `owner` (of `kinds`) with an image of one of `paletteKeys`, at most `perPalette` per
   * palette (the last indexed first), with the image and palette that brought them. Each palette's
   * items are read from the (palette_key, item_key) index from its end, never all of them.
   */
  async itemsWithPalettes(paletteKeys: readonly number[], opts: { owner: Owner; kinds: readonly ItemKind[]; perPalette: number }): Promise<ItemImage[]> {
    const keys = [...new Set(paletteKeys)];
    if (keys.length === 0) return [];
    const columns = sql`s.item_key, s.kind, s.item_id, s.created_at, p.image_idx, p.palette_key`;
    const owned = opts.owner === null ? sql`s.owner is null` : sql`s.owner = ${opts.owner}`;
    const kinds = sql.join(opts.kinds.map((k) => sql`${k}`));
    if (this.dialect === 'postgres') {
      const { rows } = await sql<ItemImageRow>`
        select ${columns} from unnest(${keys}::bigint[]) as wanted(palette_key)
        cross join lateral (
          select p.item_key, p.image_idx, p.palette_key from search_item_palettes p
          join search_items s on s.item_key = p.item_key
          where p.palette_key = wanted.palette_key and ${owned} and s.kind in (${kinds})
          order by p.item_key desc limit ${opts.perPalette}
        ) p
        join search_items s on s.item_key = p.item_key`.execute(this.db);
      return rows.map(itemImage);
    }
    const items: ItemImage[] = [];
    for (const key of keys) {
      const { rows } = await sql<ItemImageRow>`
        select ${columns} from search_item_palettes p join search_items s on s.item_key = p.item_key
        where p.palette_key = ${key} and ${owned} and s.kind in (${kinds})
        order by p.item_key desc limit ${opts.perPalette}`.execute(this.db);
      items.push(...rows.map(itemImage));
    }
    return items;
  }

  /** Kind and id of the items `itemKeys` (found by an owner-scoped query), by key. */
  async refs(itemKeys: readonly number[]): Promise<Map<number, SearchItemRef>> {
    if (itemKeys.length === 0) return new Map();
    const rows = await this.db
      .selectFrom('search_items')
      .select(['item_key', 'kind', 'item_id', 'created_at'])
      .where(this.keyIn('item_key', itemKeys))
      .execute();
    return new Map(rows.map((r) => [Number(r.item_key), itemRef(r)]));
  }

  /**
   * The palette of each image of the items `itemKeys` (items found by an owner-scoped query: the
   * links are read by their primary key alone), by item.
   */
  async imagePalettes(itemKeys: readonly number[]): Promise<{ itemKey: number; imageIdx: number; paletteKey: number }[]> {
    if (itemKeys.length === 0) return [];
    const rows = await this.db
      .selectFrom('search_item_palettes')
      .select(['item_key', 'image_idx', 'palette_key'])
      .where(this.keyIn('item_key', itemKeys))
      .execute();
    return rows.map((r) => ({ itemKey: Number(r.item_key), imageIdx: Number(r.image_idx), paletteKey: Number(r.palette_key) }));
  }

  /** The item `kind`/`itemId` of `owner` with the palette of each of its images, or null. */
  async item(kind: ItemKind, itemId: string, owner: Owner): Promise<ItemPalettes | null> {
    const row = await this.db
      .selectFrom('search_items')
      .select(['search_items.item_key', 'search_items.kind', 'search_items.item_id', 'search_items.created_at'])
      .where('search_items.kind', '=', kind)
      .where('search_items.item_id', '=', itemId)
      .where(ownedBy(owner))
      .executeTakeFirst();
    if (!row) return null;
    const images = await this.imagePalettes([Number(row.item_key)]);
    return { ...itemRef(row), palettes: new Map(images.map((i) => [i.imageIdx, i.paletteKey])) };
  }
}

function itemRef(r: { item_key: number | string; kind: ItemKind; item_id: string; created_at: number | string }): SearchItemRef {
  return { itemKey: Number(r.item_key), kind: r.kind, itemId: r.item_id, createdAtMs: Number(r.created_at) };
}

interface ItemImageRow {
  item_key: number | string;
  kind: ItemKind;
  item_id: string;
  created_at: number | string;
  image_idx: number;
  palette_key: number | string;
}

function itemImage(r: ItemImageRow): ItemImage {
  return { ...itemRef(r), imageIdx: Number(r.image_idx), paletteKey: Number(r.palette_key) };
}

/**
 * The parsed query as a PostgreSQL `tsquery`: each word or phrase through
 * `phraseto_tsquery('english', …)` (stemming, stop words, adjacency), joined with `&&`, `||` and `!!`.
 */
function toTsquery(query: TextQuery): RawBuilder<unknown> {
  const phrase = (p: Phrase): Expression<unknown> => sql`phraseto_tsquery('english', ${p.join(' ')})`;
  const groups = query.groups.map((g) => {
    const parts = [...g.include.map(phrase), ...g.exclude.map((p) => sql`(!! ${phrase(p)})`)];
    return sql`(${sql.join(parts, sql` && `)})`;
  });
  return sql`(${sql.join(groups, sql` || `)})`;
}
