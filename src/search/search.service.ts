import { HttpStatus, Injectable } from '@nestjs/common';
import { AppError } from '../common/app-error';
import type { Generation } from '../common/generation.model';
import type { Reference } from '../common/reference.model';
import { GenerationsRepository, Owner } from '../database/generations.repository';
import { ReferencesRepository } from '../database/references.repository';
import { ItemImage, SearchRepository } from '../database/search.repository';
import { AppMetrics, Outcome } from '../telemetry/app-metrics';
import { withSpan } from '../telemetry/tracing';
import type { Span } from '@opentelemetry/api';
import { ItemKind, Oklab, rgbToOklab, Rgb } from './color-space';
import { fuse, FusionCandidate } from './fusion';
import { paletteDistance, WeightedColor } from './palette-distance';
import { hasTerms, parseTextQuery } from './text-query';

export const MAX_QUERY_COLORS = 5;
/** Colours of a `similarTo` item's palette that seed the nearest-point search (all of them rank). */
const MAX_SEED_COLORS = 5;
/** Palettes whose items one query loads at a time, best first. */
const PALETTE_BATCH = 4;

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
 *    distinct palettes owning the `candidateCount(limit)` nearest colour points in the index, ranked
 *    exactly by their distance to the query, then their items, best palettes first (newest first
 *    within one), until a page is full;
 * 3. every candidate gets each signal exactly: its colour distance (Earth Mover's Distance between
 *    the query and each of its images' palettes, the best counting; computed once per distinct
 *    palette) and its text rank (when it matches);
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
    const withText = textQuery !== undefined && hasTerms(textQuery);

    // The two signals' candidates are looked up side by side (PostgreSQL runs them on two connections).
    // With colours too, many more text matches are ranked by colour: the ones that match both may be
    // anywhere in the text order (prompts often score alike).
    const textLimit = colorQuery ? hybridTextCandidates(limit) : k;
    const distances = colorQuery ? new PaletteDistances(colorQuery.colors, this.index) : undefined;
    const [textHits, colorItems] = await Promise.all([
      withText ? withSpan('search.text', {}, () => this.index.text(textQuery, { owner, kinds, limit: textLimit })) : [],
      colorQuery && distances ? withSpan('search.color', { 'search.colors': colorQuery.colors.length }, (span) => this.colorCandidates(colorQuery, distances, params, span)) : [],
    ]);
    const candidates = new Map<number, Candidate>();
    for (const hit of textHits) candidates.set(hit.itemKey, { key: hit.itemKey, textOrder: hit.order, createdAt: hit.createdAtMs });
    for (const image of colorItems) {
      if (!candidates.has(image.itemKey)) candidates.set(image.itemKey, { key: image.itemKey, createdAt: image.createdAtMs, itemId: image.itemId, kind: image.kind });
    }

    if (colorQuery && distances) {
      await withSpan('search.rerank', { 'search.candidates': candidates.size }, async () => {
        // Colour candidates that match the text too, beyond the text's own top list; and every
        // candidate's palettes.
        const among = [...candidates.values()].filter((c) => c.textOrder === undefined).map((c) => c.key);
        const [alsoText, images] = await Promise.all([
          withText && among.length > 0 ? this.index.text(textQuery, { owner, kinds, limit: k, among }) : [],
          this.index.imagePalettes([...candidates.keys()]),
        ]);
        for (const hit of alsoText) candidates.get(hit.itemKey)!.textOrder = hit.order;
        // Every candidate's distance: the best of its images' palettes.
        await distances.load(images.map((i) => i.paletteKey));
        for (const image of images) {
          const c = candidates.get(image.itemKey)!;
          const distance = distances.of(image.paletteKey);
          if (c.colorDistance === undefined || distance < c.colorDistance) {
            c.colorDistance = distance;
            c.imageIndex = image.imageIdx;
          }
        }
      });
    }

    const fused = fuse([...candidates.values()]).slice(0, limit);
    const hits = await withSpan('search.load', { 'search.results': fused.length }, () => this.load(fused, candidates, owner));
    return { hits, candidateTotal: candidates.size };
  }

  /**
   * The palettes nearest to each query colour, ranked by their exact distance, then their items,
   * best palettes first, until a page is full (items sharing a palette are equally near).
   */
  private async colorCandidates(
    colorQuery: { colors: WeightedColor[]; exclude?: number },
    distances: PaletteDistances,
    { owner, kinds, limit }: SearchParams,
    span: Span,
  ): Promise<ItemImage[]> {
    const k = candidateCount(limit);
    const seeds = [...colorQuery.colors].sort((a, b) => b.weight - a.weight).slice(0, MAX_SEED_COLORS);
    const near = new Set<number>();
    for (const seed of seeds) for (const key of await this.index.nearestPalettes(seed.lab, seed.weight, { owner, kinds, k })) near.add(key);
    const ranked = await distances.rank([...near]);
    span.setAttribute('search.palettes', ranked.length);
    const items: ItemImage[] = [];
    const seen = new Set<number>();
    for (let i = 0; i < ranked.length && items.length < limit; i += PALETTE_BATCH) {
      const images = await this.index.itemsWithPalettes(ranked.slice(i, i + PALETTE_BATCH), { owner, kinds, perPalette: limit - items.length + 1 });
      for (const image of images) {
        if (image.itemKey === colorQuery.exclude || seen.has(image.itemKey)) continue;
        seen.add(image.itemKey);
        items.push(image);
      }
    }
    return items;
  }

  /** The query's colours in OKLab with normalised weights; for `similarTo`, the item's palette. */
  private async colorQuery(params: SearchParams): Promise<{ colors: WeightedColor[]; exclude?: number } | undefined> {
    if (params.similarTo) {
      const { kind, id } = params.similarTo;
      const item = await this.index.item(kind, id, params.owner);
      if (!item) throw notFound(kind, id);
      const first = [...item.palettes.keys()].sort((a, b) => a - b)[0];
      if (first === undefined) {
        throw new AppError(HttpStatus.BAD_REQUEST, 'NO_PALETTE', `The ${kind} ${id} has no palette yet, so nothing can be similar to it`);
      }
      const paletteKey = item.palettes.get(first)!;
      const colors = (await this.index.paletteColors([paletteKey])).get(paletteKey) ?? [];
      return { colors, exclude: item.itemKey };
    }
    if (!params.colors?.length) return undefined;
    const total = params.colors.reduce((s, c) => s + c.weight, 0);
    return { colors: params.colors.map((c) => ({ lab: rgbToOklab(c.rgb) as Oklab, weight: c.weight / total })) };
  }

  private async load(fused: ReturnType<typeof fuse>, candidates: Map<number, Candidate>, owner: Owner): Promise<SearchHit[]> {
    const unknown = fused.map((f) => candidates.get(f.key)!).filter((c) => c.itemId === undefined);
    for (const [key, ref] of await this.index.refs(unknown.map((c) => c.key))) Object.assign(candidates.get(key)!, { itemId: ref.itemId, kind: ref.kind });
    const page = fused.map((f) => ({ f, c: candidates.get(f.key)! })).filter(({ c }) => c.itemId !== undefined);
    const ids = (kind: ItemKind) => page.filter(({ c }) => c.kind === kind).map(({ c }) => c.itemId!);
    const [generations, references] = await Promise.all([this.generations.findByIds(ids('generation'), owner), this.references.findOwned(ids('reference'), owner)]);
    const byId = new Map<string, SearchHit['item']>([
      ...generations.map((g): [string, SearchHit['item']] => [`generation:${g.id}`, { kind: 'generation', value: g }]),
      ...references.map((r): [string, SearchHit['item']] => [`reference:${r.id}`, { kind: 'reference', value: r }]),
    ]);
    return page.flatMap(({ f, c }) => {
      // Deleted since it was found: left out.
      const item = byId.get(`${c.kind}:${c.itemId}`);
      if (!item) return [];
      return [
        {
          kind: c.kind!,
          id: c.itemId!,
          score: f.score,
          text: f.textRank === null ? null : { rank: f.textRank },
          color: f.colorDistance === null ? null : { distance: f.colorDistance, imageIndex: c.imageIndex ?? 0 },
          item,
        },
      ];
    });
  }
}

type Candidate = FusionCandidate & { itemId?: string; kind?: ItemKind; imageIndex?: number };

/**
 * Distances from one query to palettes, each palette's colours loaded and its distance computed
 * once, however many items share it.
 */
class PaletteDistances {
  private readonly distances = new Map<number, number>();

  constructor(
    private readonly query: readonly WeightedColor[],
    private readonly index: SearchRepository,
  ) {}

  /** Loads and measures the palettes not measured yet. */
  async load(paletteKeys: readonly number[]): Promise<void> {
    const missing = [...new Set(paletteKeys)].filter((key) => !this.distances.has(key));
    for (const [key, colors] of await this.index.paletteColors(missing)) this.distances.set(key, paletteDistance(this.query, colors));
  }

  /** `paletteKeys`, nearest first (ties: the newer palette first). */
  async rank(paletteKeys: readonly number[]): Promise<number[]> {
    await this.load(paletteKeys);
    return paletteKeys.filter((key) => this.distances.has(key)).sort((a, b) => this.of(a) - this.of(b) || b - a);
  }

  of(paletteKey: number): number {
    return this.distances.get(paletteKey) ?? Infinity;
  }
}
