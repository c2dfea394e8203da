/**
 * Hybrid ranking: reciprocal rank fusion (Cormack, Clarke & Büttcher, 2009) with k = 60, in tiers
 * of how many criteria an item matches, over the union of the text and colour candidates with each
 * signal evaluated for every candidate.
 *
 * Why RRF: the two signals have no common scale (bm25 or ts_rank against a colour distance) and
 * their score distributions change with every query, so any weighted sum of scores would need a
 * calibration that holds for no query in particular; RRF uses only the ranks, needs none, and is the
 * usual baseline hybrid search is measured against. k = 60 (the paper's value) keeps the first few
 * ranks of one signal from outweighing a good rank in both.
 *
 * Why "or better", twice:
 * - plain RRF fuses two independent top-K lists, so an item that is the 300th best text match and
 *   the 300th best colour match falls out of both, though it may be the only item that matches
 *   both. Here every text candidate also gets its exact colour distance and every colour candidate
 *   its text rank (when it matches the text at all), and the union is ranked;
 * - RRF alone lets an item that matches one criterion very well (text rank 1, wrong colours) beat
 *   items that match both moderately well: wrong when the query asked for both. So items are first
 *   ordered by how many criteria they match (text: matches the query; colour: distance ≤
 *   COLOR_MATCH_DISTANCE), the strict form of CombMNZ's "reward agreement" (Fox & Shaw, 1994), and
 *   by RRF within each tier. `score` = matched criteria + RRF, so it falls as the ranking does.
 *
 * The bench compares precision@10 of text-only, colour-only and this hybrid ranking on queries that
 * need both signals.
 */
export const RRF_K = 60;
/**
 * A colour distance (EMD, ΔE_OK units; the ground distance is capped at 40) at or below which an
 * item counts as matching the colours: at least about half of its colour mass is where the query's is.
 */
export const COLOR_MATCH_DISTANCE = 20;

export interface FusionCandidate {
  key: number;
  /** Text order: lower is better (bm25, or −ts_rank); undefined = does not match the text. */
  textOrder?: number;
  /** Colour distance: lower is better; undefined = no palette or no colour criterion. */
  colorDistance?: number;
  /** Newer first among equals, then the larger key: every ranking is deterministic. */
  createdAt: number;
}

export interface FusedResult {
  key: number;
  score: number;
  /** 1-based rank among the candidates that match the text (ties share one); null when it does not. */
  textRank: number | null;
  /** 1-based rank by colour distance; null without one. */
  colorRank: number | null;
  colorDistance: number | null;
}

function tieBreak(a: FusionCandidate, b: FusionCandidate): number {
  return b.createdAt - a.createdAt || b.key - a.key;
}

/**
 * 1-based dense ranks by `value` (lower is better) of the candidates that have one: equal values
 * share a rank and the next value takes the next rank ("1223"). A rank then counts the distinct
 * better answers, not the items that share one: prompts that score alike, or items with the same
 * palette, neither get an arbitrary order nor push every other answer far down the list.
 */
function ranks(candidates: readonly FusionCandidate[], value: (c: FusionCandidate) => number | undefined): Map<number, number> {
  const sorted = candidates.filter((c) => value(c) !== undefined).sort((a, b) => value(a)! - value(b)!);
  const result = new Map<number, number>();
  let rank = 0;
  sorted.forEach((c, i) => {
    if (i === 0 || value(sorted[i - 1])! !== value(c)!) rank++;
    result.set(c.key, rank);
  });
  return result;
}

/** Ranks of each candidate per signal, then its score (matched criteria + RRF); best first. */
export function fuse(candidates: readonly FusionCandidate[]): FusedResult[] {
  const textRanks = ranks(candidates, (c) => c.textOrder);
  const colorRanks = ranks(candidates, (c) => c.colorDistance);
  const results = candidates.map((c) => {
    const textRank = textRanks.get(c.key) ?? null;
    const colorRank = colorRanks.get(c.key) ?? null;
    const matched = (textRank ? 1 : 0) + (c.colorDistance !== undefined && c.colorDistance <= COLOR_MATCH_DISTANCE ? 1 : 0);
    const score = matched + (textRank ? 1 / (RRF_K + textRank) : 0) + (colorRank ? 1 / (RRF_K + colorRank) : 0);
    return { candidate: c, result: { key: c.key, score, textRank, colorRank, colorDistance: c.colorDistance ?? null } };
  });
  results.sort((a, b) => b.result.score - a.result.score || tieBreak(a.candidate, b.candidate));
  return results.map((r) => r.result);
}
