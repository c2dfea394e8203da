import { COLOR_MATCH_DISTANCE, fuse, RRF_K } from './fusion';

describe('fuse (tiered reciprocal rank fusion)', () => {
  it('ranks each signal among the candidates that have it, and scores matched criteria + Σ 1/(60 + rank)', () => {
    const [first, second] = fuse([
      { key: 1, textOrder: -2, createdAt: 0 },
      { key: 2, textOrder: -5, colorDistance: 3, createdAt: 0 },
    ]);
    expect(first).toEqual({ key: 2, score: 2 + 1 / (RRF_K + 1) + 1 / (RRF_K + 1), textRank: 1, colorRank: 1, colorDistance: 3 });
    expect(second).toEqual({ key: 1, score: 1 + 1 / (RRF_K + 2), textRank: 2, colorRank: null, colorDistance: null });
  });

  it('puts items matching both criteria above items that match one very well', () => {
    const candidates = [
      ...Array.from({ length: 50 }, (_, i) => ({ key: i, textOrder: i, createdAt: 0 })),
      ...Array.from({ length: 50 }, (_, i) => ({ key: 100 + i, colorDistance: i / 10, createdAt: 0 })),
      { key: 999, textOrder: 49.5, colorDistance: COLOR_MATCH_DISTANCE, createdAt: 0 },
    ];
    const ranked = fuse(candidates);
    expect(ranked[0].key).toBe(999);
    expect(ranked[0].textRank).toBe(51);
    // Then single-criterion items interleave by their RRF score.
    expect(ranked.slice(1, 3).map((r) => r.key).sort()).toEqual([0, 100]);
  });

  it('breaks ties newest first, then by key, so a ranking is deterministic', () => {
    const ranked = fuse([
      { key: 1, colorDistance: 2, createdAt: 10 },
      { key: 2, colorDistance: 2, createdAt: 20 },
      { key: 3, colorDistance: 2, createdAt: 20 },
    ]);
    expect(ranked.map((r) => r.key)).toEqual([3, 2, 1]);
  });
});
