import { HttpStatus, Injectable } from '@nestjs/common';
import { AppError } from '../common/app-error';
import type { Generation } from '../common/generation.model';
import type { Reference } from '../common/reference.model';
import { GenerationsRepository, Owner } from '../database/generations.repository';
import { ReferencesRepository } from '../database/references.repository';
import { ItemPalettes, SearchRepository } from '../database/search.repository';
import { AppMetrics, Outcome } from '../telemetry/app-metrics';
import { withSpan } from '../telemetry/tracing';
import { ItemKind, Oklab, rgbToOklab, Rgb } from './color-space';
import { fuse, FusionCandidate } from './fusion';
import { paletteDistance, paletteDistanceLowerBound, WeightedColor } from './palette-distance';
import { hasTerms, parseTextQuery } from './text-query';

export const MAX_QUERY_COLORS = 5;
/** Colours of a `similarTo` item's palette that seed the nearest-point search (all of them rank). */
const MAX_SEED_COLORS = 5;

export interface QueryColor {
  rgb: Rgb;
  /** Relative weight (> 0); the query's weights are normalised to sum 1. */
  weight: number;
}

export interface SearchParams {
  owner: Owner;
  q?: string;
  colors?: QueryColor[];
  similarTo?: { kind: ItemKind; id: string };
  kinds: readonly ItemKind[];
  limit: number;
}

export type SearchMode = 'text' | 'color' | 'similar' | 'hybrid';

export interface SearchHit {
  kind: ItemKind;
  id: string;
  score: number;
  text: { rank: number } | null;
  /** `imageIndex`: the generation's image whose palette matched best (0 for references). */
  color: { distance: number; imageIndex: number } | null;
  item: { kind: 'generation'; value: Generation } | { kind: 'reference'; value: Reference };
}

export interface SearchResult {
  mode: SearchMode;
  hits: SearchHit[];
}

/** How many candidates each signal brings for a page of `limit`. */
export function candidateCount(limit: number): number {
  return Math.max(100, 5 * limit);
}

/** Text matches whose colour distance a hybrid search computes, for a page of `limit`. */
export function hybridTextCandidates(limit: number): number {
  return Math.max(1000, 20 * limit);
}

const notFound = (kind: ItemKind, id: string) =>
  kind === 'generation'
    ? new AppError(HttpStatus.NOT_FOUND, 'GENERATION_NOT_FOUND', `No generation with id ${id}`)
    : new AppError(HttpStatus.NOT_FOUND, 'REFERENCE_NOT_FOUND', `No reference with id ${id}`);

/**
 * Hybrid search over one owner's generations and references:
 *
 * 1. text: the best `candidateCount(limit)` matches of `q` (FTS5 bm25 / PostgreSQL ts_rank), or
 *    `hybridTextCandidates(limit)` of them when colours are asked for too;
 * 2. colour: for each query colour (or each of the `similarTo` item's main palette colours), the
 *    items owning the `candidateCount(limit)` nearest palette colours in the index;
 * 3. every candidate gets each signal exactly: its colour distance (Earth Mover's Distance between
 *    the query and each of its palettes, the best image counting) and its text rank (when it matches);
 * 4. reciprocal rank fusion (fusion.ts) orders the union; the first `limit` are loaded and returned.
 */
@Injectable()
export class SearchService {
  constructor(
    private readonly index: SearchRepository,
    private readonly generations: GenerationsRepository,
    private readonly references: ReferencesRepository,
    private readonly metrics: AppMetrics,
  ) {}

  async search(params: SearchParams): Promise<SearchResult> {
    const mode: SearchMode = params.similarTo ? (params.q ? 'hybrid' : 'similar') : params.q && params.colors?.length ? 'hybrid' : params.q ? 'text' : 'color';
    const started = performance.now();
    let outcome: Outcome = 'error';
    let candidates = 0;
    try {
      const result = await withSpan('search', { 'search.mode': mode, 'search.limit': params.limit, 'search.colors': params.colors?.length ?? 0, 'search.kinds': params.kinds.join(',') }, async (span) => {
        const { hits, candidateTotal } = await this.run(params);
        candidates = candidateTotal;
        span.setAttributes({ 'search.candidates': candidateTotal, 'search.results': hits.length });
        return { mode, hits };
      });
      outcome = 'ok';
      return result;
    } finally {
      this.metrics.recordSearch(mode, outcome, (performance.now() - started) / 1000, candidates);
    }
  }

  private async run(params: SearchParams): Promise<{ hits: SearchHit[]; candidateTotal: number }> {
    const { owner, kinds, limit } = params;
    const k = candidateCount(limit);
    const colorQuery = await this.colorQuery(params);
    const textQuery = params.q !== undefined ? parseTextQuery(params.q) : undefined;

    // With colours too, many more text matches are ranked by colour: the ones that match both may
    // be anywhere in the text order (prompts often score alike).
    const textLimit = colorQuery ? hybridTextCandidates(limit) : k;
    const textHits = textQuery && hasTerms(textQuery) ? await withSpan('search.text', {}, () => this.index.text(textQuery, { owner, kinds, limit: textLimit })) : [];
    const candidates = new Map<number, FusionCandidate & { itemId: string; kind: ItemKind; imageIndex?: number }>();
    for (const hit of textHits) candidates.set(hit.itemKey, { key: hit.itemKey, textOrder: hit.order, createdAt: hit.createdAtMs, itemId: hit.itemId, kind: hit.kind });

    if (colorQuery) {
      await withSpan('search.color', { 'search.colors': colorQuery.colors.length }, async () => {
        const seeds = [...colorQuery.colors].sort((a, b) => b.weight - a.weight).slice(0, MAX_SEED_COLORS);
        const near = new Set<number>();
        for (const seed of seeds) {
          for (const key of await this.index.nearestItems(seed.lab, seed.weight, { owner, kinds, k })) near.add(key);
        }
        if (colorQuery.exclude !== undefined) near.delete(colorQuery.exclude);
        // Colour candidates that match the text too, beyond the text's own top list.
        if (textQuery && hasTerms(textQuery)) {
          const among = [...near].filter((key) => !candidates.has(key));
          for (const hit of await this.index.text(textQuery, { owner, kinds, limit: k, among })) {
            candidates.set(hit.itemKey, { key: hit.itemKey, textOrder: hit.order, createdAt: hit.createdAtMs, itemId: hit.itemId, kind: hit.kind });
          }
        }
        const keys = [...new Set([...near, ...candidates.keys()])].filter((key) => key !== colorQuery.exclude);
        for (const item of await this.index.palettes(keys, owner)) {
          const best = bestImage(colorQuery.colors, item);
          const existing = candidates.get(item.itemKey);
          const entry = existing ?? { key: item.itemKey, createdAt: item.createdAtMs, itemId: item.itemId, kind: item.kind };
          candidates.set(item.itemKey, { ...entry, colorDistance: best.distance, imageIndex: best.imageIndex });
        }
      });
    }

    const fused = fuse([...candidates.values()]).slice(0, limit);
    const hits = await withSpan('search.load', { 'search.results': fused.length }, () => this.load(fused, candidates, owner));
    return { hits, candidateTotal: candidates.size };
  }

  /** The query's colours in OKLab with normalised weights; for `similarTo`, the item's palette. */
  private async colorQuery(params: SearchParams): Promise<{ colors: WeightedColor[]; exclude?: number } | undefined> {
    if (params.similarTo) {
      const { kind, id } = params.similarTo;
      const item = await this.index.item(kind, id, params.owner);
      if (!item) throw notFound(kind, id);
      const first = [...item.images.keys()].sort((a, b) => a - b)[0];
      if (first === undefined) {
        throw new AppError(HttpStatus.BAD_REQUEST, 'NO_PALETTE', `The ${kind} ${id} has no palette yet, so nothing can be similar to it`);
      }
      return { colors: item.images.get(first)!, exclude: item.itemKey };
    }
    if (!params.colors?.length) return undefined;
    const total = params.colors.reduce((s, c) => s + c.weight, 0);
    return { colors: params.colors.map((c) => ({ lab: rgbToOklab(c.rgb) as Oklab, weight: c.weight / total })) };
  }

  private async load(
    fused: ReturnType<typeof fuse>,
    candidates: Map<number, { itemId: string; kind: ItemKind; imageIndex?: number }>,
    owner: Owner,
  ): Promise<SearchHit[]> {
    const ids = (kind: ItemKind) => fused.map((f) => candidates.get(f.key)!).filter((c) => c.kind === kind).map((c) => c.itemId);
    const [generations, references] = await Promise.all([this.generations.findByIds(ids('generation'), owner), this.references.findOwned(ids('reference'), owner)]);
    const byId = new Map<string, SearchHit['item']>([
      ...generations.map((g): [string, SearchHit['item']] => [`generation:${g.id}`, { kind: 'generation', value: g }]),
      ...references.map((r): [string, SearchHit['item']] => [`reference:${r.id}`, { kind: 'reference', value: r }]),
    ]);
    return fused.flatMap((f) => {
      const c = candidates.get(f.key)!;
      // Deleted since it was found: left out.
      const item = byId.get(`${c.kind}:${c.itemId}`);
      if (!item) return [];
      return [
        {
          kind: c.kind,
          id: c.itemId,
          score: f.score,
          text: f.textRank === null ? null : { rank: f.textRank },
          color: f.colorDistance === null ? null : { distance: f.colorDistance, imageIndex: c.imageIndex ?? 0 },
          item,
        },
      ];
    });
  }
}

/** The image of `item` whose palette is nearest to `query`, and that distance. */
function bestImage(query: readonly WeightedColor[], item: ItemPalettes): { distance: number; imageIndex: number } {
  let best = { distance: Infinity, imageIndex: 0 };
  for (const [imageIndex, palette] of item.images) {
    if (paletteDistanceLowerBound(query, palette) >= best.distance) continue;
    const distance = paletteDistance(query, palette);
    if (distance < best.distance) best = { distance, imageIndex };
  }
  return best;
}
