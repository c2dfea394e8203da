/** Small exact statistics for the load harness: every sample is kept (bounded), then sorted once. */

/** Samples kept per series; past this, reservoir sampling keeps a uniform subset (the soak can be long). */
const MAX_SAMPLES = 500_000;

/** Latency samples (ms) of one series with exact percentiles over a uniform sample. */
export class Samples {
  private values = new Float64Array(1024);
  private length = 0;
  private seen = 0;
  private sorted: Float64Array | undefined;
  private max = 0;
  private sum = 0;

  add(value: number): void {
    this.seen++;
    this.sum += value;
    if (value > this.max) this.max = value;
    this.sorted = undefined;
    if (this.length < MAX_SAMPLES) {
      if (this.length === this.values.length) {
        const bigger = new Float64Array(Math.min(MAX_SAMPLES, this.values.length * 2));
        bigger.set(this.values);
        this.values = bigger;
      }
      this.values[this.length++] = value;
      return;
    }
    // Algorithm R: each of the `seen` samples is kept with the same probability.
    const slot = Math.floor(Math.random() * this.seen);
    if (slot < MAX_SAMPLES) this.values[slot] = value;
  }

  get count(): number {
    return this.seen;
  }

  /** Nearest-rank percentile (p in 0..100); NaN when empty. */
  percentile(p: number): number {
    if (this.length === 0) return Number.NaN;
    this.sorted ??= this.values.slice(0, this.length).sort();
    const rank = Math.min(this.length - 1, Math.max(0, Math.ceil((p / 100) * this.length) - 1));
    return this.sorted[rank];
  }

  summary(): LatencySummary {
    return {
      count: this.seen,
      p50: round(this.percentile(50)),
      p95: round(this.percentile(95)),
      p99: round(this.percentile(99)),
      max: round(this.seen ? this.max : Number.NaN),
      mean: round(this.seen ? this.sum / this.seen : Number.NaN),
    };
  }
}

export interface LatencySummary {
  count: number;
  p50: number | null;
  p95: number | null;
  p99: number | null;
  max: number | null;
  mean: number | null;
}

/** Rounds to `digits` decimals; NaN and ±Infinity become null (JSON has no NaN). */
export function round(value: number, digits = 1): number | null {
  if (!Number.isFinite(value)) return null;
  const f = 10 ** digits;
  return Math.round(value * f) / f;
}

/** Least-squares line through (x, y): slope and intercept; null with fewer than 2 distinct x. */
export function linearFit(points: readonly (readonly [number, number])[]): { slope: number; intercept: number; r2: number } | null {
  const n = points.length;
  if (n < 2) return null;
  let sx = 0;
  let sy = 0;
  for (const [x, y] of points) {
    sx += x;
    sy += y;
  }
  const mx = sx / n;
  const my = sy / n;
  let sxx = 0;
  let sxy = 0;
  let syy = 0;
  for (const [x, y] of points) {
    sxx += (x - mx) ** 2;
    sxy += (x - mx) * (y - my);
    syy += (y - my) ** 2;
  }
  if (sxx === 0) return null;
  const slope = sxy / sxx;
  return { slope, intercept: my - slope * mx, r2: syy === 0 ? 1 : (sxy * sxy) / (sxx * syy) };
}

/** Least-squares slope per minute of (seconds, value) points, to 2 decimals; null when there is no line. */
export function slopePerMinute(points: readonly (readonly [number, number])[]): number | null {
  const fit = linearFit(points.map(([seconds, value]) => [seconds / 60, value]));
  return fit ? round(fit.slope, 2) : null;
}

/** Max, mean and p99 of a series of numbers (for per-second samples such as CPU or queue depth). */
export function seriesStats(values: readonly number[]): { max: number | null; mean: number | null; p99: number | null } {
  const finite = values.filter(Number.isFinite);
  if (finite.length === 0) return { max: null, mean: null, p99: null };
  const sorted = [...finite].sort((a, b) => a - b);
  return {
    max: round(sorted[sorted.length - 1], 2),
    mean: round(finite.reduce((a, b) => a + b, 0) / finite.length, 2),
    p99: round(sorted[Math.min(sorted.length - 1, Math.ceil(0.99 * sorted.length) - 1)], 2),
  };
}
