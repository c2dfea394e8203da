/**
 * What the palette engine is measured against:
 * - `pyletteLike`: the replaced system's algorithm, Pylette's default `extract_colors` (RGBA, resize
 *   to 256×256 ignoring aspect, drop alpha = 0, scikit-learn KMeans: k-means++ with 2 + ln k local
 *   trials, one init, Lloyd to tol 1e-4 × mean variance, centres truncated to int), ported to JS
 *   so it runs on the same decoder and the same images. Its speed is not Pylette's (NumPy and
 *   PIL differ); the measured Python figure is in docs/palette.md.
 * - `naiveVibrant`: node-vibrant left to decode the file itself (jimp, pure JS).
 */
import sharp from 'sharp';
import { Vibrant } from 'node-vibrant/node';
import { seededRandom, type PaletteEntry } from '../support/images';

const PYLETTE_SIDE = 256;
const MAX_ITER = 300;

export async function pyletteLike(image: Buffer, size: number, seed = 2024): Promise<PaletteEntry[]> {
  const { data } = await sharp(image)
    .resize(PYLETTE_SIDE, PYLETTE_SIDE, { fit: 'fill' })
    .toColourspace('srgb')
    .ensureAlpha()
    .raw()
    .toBuffer({ resolveWithObject: true });
  const dims = 4;
  const points: number[] = [];
  for (let o = 0; o < data.length; o += 4) if (data[o + 3] > 0) points.push(data[o], data[o + 1], data[o + 2], data[o + 3]);
  const x = Float64Array.from(points);
  const n = x.length / dims;
  const k = Math.min(size, n);
  const rand = seededRandom(seed);

  const d2 = (i: number, c: Float64Array, j: number) => {
    let s = 0;
    for (let d = 0; d < dims; d++) {
      const v = x[i * dims + d] - c[j * dims + d];
      s += v * v;
    }
    return s;
  };

  // k-means++ as scikit-learn does it: sample 2 + ln k candidates ∝ D², keep the best.
  const centers = new Float64Array(k * dims);
  const first = Math.floor(rand() * n);
  centers.set(x.subarray(first * dims, first * dims + dims), 0);
  const closest = new Float64Array(n);
  for (let i = 0; i < n; i++) closest[i] = d2(i, centers, 0);
  const trials = 2 + Math.floor(Math.log(k));
  for (let c = 1; c < k; c++) {
    const total = closest.reduce((s, v) => s + v, 0);
    let bestCandidate = 0;
    let bestPotential = Infinity;
    let bestClosest: Float64Array | null = null;
    for (let t = 0; t < trials; t++) {
      let r = rand() * total;
      let candidate = 0;
      while (candidate < n - 1 && r >= closest[candidate]) r -= closest[candidate++];
      const cand = x.subarray(candidate * dims, candidate * dims + dims);
      const next = new Float64Array(n);
      let potential = 0;
      for (let i = 0; i < n; i++) {
        let s = 0;
        for (let d = 0; d < dims; d++) {
          const v = x[i * dims + d] - cand[d];
          s += v * v;
        }
        next[i] = Math.min(closest[i], s);
        potential += next[i];
      }
      if (potential < bestPotential) {
        bestPotential = potential;
        bestCandidate = candidate;
        bestClosest = next;
      }
    }
    centers.set(x.subarray(bestCandidate * dims, bestCandidate * dims + dims), c * dims);
    closest.set(bestClosest!);
  }

  // tol is relative to the data's mean per-feature variance, as in scikit-learn.
  let varianceSum = 0;
  for (let d = 0; d < dims; d++) {
    let mean = 0;
    for (let i = 0; i < n; i++) mean += x[i * dims + d];
    mean /= n;
    let v = 0;
    for (let i = 0; i < n; i++) v += (x[i * dims + d] - mean) ** 2;
    varianceSum += v / n;
  }
  const tol = 1e-4 * (varianceSum / dims);

  const labels = new Int32Array(n);
  const sums = new Float64Array(k * dims);
  const counts = new Float64Array(k);
  for (let iter = 0; iter < MAX_ITER; iter++) {
    sums.fill(0);
    counts.fill(0);
    for (let i = 0; i < n; i++) {
      let best = 0;
      let bestD = Infinity;
      for (let c = 0; c < k; c++) {
        const d = d2(i, centers, c);
        if (d < bestD) {
          bestD = d;
          best = c;
        }
      }
      labels[i] = best;
      counts[best]++;
      for (let d = 0; d < dims; d++) sums[best * dims + d] += x[i * dims + d];
    }
    let shift = 0;
    for (let c = 0; c < k; c++) {
      if (counts[c] === 0) continue;
      for (let d = 0; d < dims; d++) {
        const v = sums[c * dims + d] / counts[c];
        shift += (v - centers[c * dims + d]) ** 2;
        centers[c * dims + d] = v;
      }
    }
    if (shift <= tol) break;
  }
  const final = new Float64Array(k);
  for (let i = 0; i < n; i++) final[labels[i]]++;
  const out: PaletteEntry[] = [];
  for (let c = 0; c < k; c++) {
    if (final[c] === 0) continue;
    // np.array(cluster_centers_, dtype=int) truncates.
    const rgb = [0, 1, 2].map((d) => Math.trunc(centers[c * dims + d])) as [number, number, number];
    out.push({ hex: `#${rgb.map((v) => v.toString(16).padStart(2, '0')).join('')}`, rgb, proportion: final[c] / n });
  }
  return out.sort((a, b) => b.proportion - a.proportion);
}

/** node-vibrant decoding the file itself (its default Node image class, jimp). Named swatches only. */
export async function naiveVibrant(image: Buffer): Promise<number> {
  const palette = await Vibrant.from(image).getPalette();
  return Object.values(palette).filter(Boolean).length;
}
