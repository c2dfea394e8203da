/**
 * Colours for search: OKLab (Björn Ottosson, 2020), a perceptual space where Euclidean distance
 * tracks perceived difference well enough to index (unlike CIEDE2000, which is not a metric on a
 * space and cannot drive an R-tree or a GiST index), and the integer coordinates colour points are
 * indexed under on both databases. Plain functions, no Nest: the migrations use them too, so what
 * they compute must never change for stored rows (a change needs a migration that re-indexes).
 */
import { createHash } from 'node:crypto';

export type Oklab = readonly [number, number, number];
export type Rgb = readonly [number, number, number];

function linear(c255: number): number {
  const c = c255 / 255;
  return c <= 0.04045 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4;
}

/** sRGB (0..255) → OKLab: L in 0..1, a and b roughly −0.4..0.4. */
export function rgbToOklab([r8, g8, b8]: Rgb): Oklab {
  const r = linear(r8);
  const g = linear(g8);
  const b = linear(b8);
  const l = Math.cbrt(0.4122214708 * r + 0.5363325363 * g + 0.0514459929 * b);
  const m = Math.cbrt(0.2119034982 * r + 0.6806995451 * g + 0.1073969566 * b);
  const s = Math.cbrt(0.0883024619 * r + 0.2817188376 * g + 0.6299787005 * b);
  return [
    0.2104542553 * l + 0.793617785 * m - 0.0040720468 * s,
    1.9779984951 * l - 2.428592205 * m + 0.4505937099 * s,
    0.0259040371 * l + 0.7827717662 * m - 0.808675766 * s,
  ];
}

/** `#rrggbb` (or `rrggbb`), any case → [r, g, b]; null when it is not one. */
export function parseHex(hex: string): Rgb | null {
  const m = /^#?([0-9a-f]{2})([0-9a-f]{2})([0-9a-f]{2})$/i.exec(hex);
  return m ? [parseInt(m[1], 16), parseInt(m[2], 16), parseInt(m[3], 16)] : null;
}

/**
 * Colour difference in "ΔE_OK" units: Euclidean OKLab distance × 100, so 1 is about one
 * just-noticeable difference, and black to white is 100.
 */
export function deltaEOk(p: Oklab, q: Oklab): number {
  return 100 * Math.hypot(p[0] - q[0], p[1] - q[1], p[2] - q[2]);
}

/** OKLab units → index units (integers, for SQLite's `rtree_i32`): 1 index unit = 0.1 ΔE_OK. */
export const INDEX_SCALE = 1000;
/**
 * A colour point is indexed with its share of the image as a fourth coordinate, so the nearest
 * points to (colour, wanted share) are colours that are both close and about as present: a share
 * difference of 0.25 weighs like ΔE_OK 5. Without it, every image with a speck of the colour would
 * crowd out the images that are mostly that colour.
 */
export const SHARE_SCALE = 200;
/**
 * A fifth coordinate separates owners and kinds: `ownerKindCode` (< 2³¹). Apart, any two codes are
 * further than any two colours of one owner (≤ ≈ 1 300 index units), so the nearest points of a
 * query are always the caller's first; PostgreSQL scales it by this much in its `cube`.
 */
export const CODE_SCALE = 10_000;

/** The four colour coordinates of a palette colour in the index. */
export function indexCoordinates(lab: Oklab, share: number): [number, number, number, number] {
  return [Math.round(lab[0] * INDEX_SCALE), Math.round(lab[1] * INDEX_SCALE), Math.round(lab[2] * INDEX_SCALE), Math.round(share * SHARE_SCALE)];
}

export type ItemKind = 'generation' | 'reference';
export const ITEM_KINDS: readonly ItemKind[] = ['generation', 'reference'];

/**
 * 30 bits of SHA-256 of the owner (null: records made with API keys off) × 2, + 1 for references: the
 * owner and kind coordinate of the colour index. A collision of two owners' hashes only costs the
 * index some pruning; every query also filters by the exact owner.
 */
export function ownerCode(owner: string | null): number {
  const digest = createHash('sha256')
    .update(owner === null ? '\u0000no-owner' : `key:${owner}`)
    .digest();
  return digest.readUInt32BE(0) >>> 2;
}

export function ownerKindCode(owner: string | null, kind: ItemKind): number {
  return ownerCode(owner) * 2 + (kind === 'reference' ? 1 : 0);
}

/** The code range of `kinds` for one owner: both kinds' codes are adjacent. */
export function codeRange(owner: string | null, kinds: readonly ItemKind[]): [number, number] {
  const base = ownerCode(owner) * 2;
  const lo = kinds.includes('generation') ? base : base + 1;
  const hi = kinds.includes('reference') ? base + 1 : base;
  return [lo, hi];
}
