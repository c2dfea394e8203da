/**
 * The distance between a colour query and a palette: the Earth Mover's Distance (Rubner, Tomasi &
 * Guibas, 2000) between the two as distributions of colour mass — the query's colours with their
 * weights, the palette's with their shares of the image — over OKLab, with the ground distance
 * ΔE_OK capped at GROUND_CAP. It is the least "colour work" that turns one into the other: 0 for the
 * same colours in the same proportions; an image that has the right colours in the wrong amounts,
 * or extra colours, pays for the mass it has to move. Capping the ground distance makes every
 * clearly different colour cost the same (a partial match is not punished for how far off its
 * other colours are), and keeps EMD a metric (a capped metric is a metric).
 *
 * Exact: a transportation problem (≤ 12 × 12 here), solved by successive shortest paths with
 * Dijkstra on reduced costs; microseconds per palette.
 */
import { deltaEOk, Oklab } from './color-space';

export interface WeightedColor {
  lab: Oklab;
  /** Weight (query) or share (palette); need not be normalised. */
  weight: number;
}

/** ΔE_OK beyond which colours count as simply different. */
export const GROUND_CAP = 40;

const EPS = 1e-12;

export function groundDistance(p: Oklab, q: Oklab): number {
  return Math.min(deltaEOk(p, q), GROUND_CAP);
}

function normalised(colors: readonly WeightedColor[]): WeightedColor[] {
  const positive = colors.filter((c) => c.weight > 0 && Number.isFinite(c.weight));
  const total = positive.reduce((s, c) => s + c.weight, 0);
  return total > 0 ? positive.map((c) => ({ lab: c.lab, weight: c.weight / total })) : [];
}

/**
 * A lower bound of `paletteDistance` that costs n × m distances: every unit of mass of either side
 * travels at least to the nearest colour of the other side.
 */
export function paletteDistanceLowerBound(query: readonly WeightedColor[], palette: readonly WeightedColor[]): number {
  const a = normalised(query);
  const b = normalised(palette);
  if (a.length === 0 || b.length === 0) return GROUND_CAP;
  let fromQuery = 0;
  for (const q of a) fromQuery += q.weight * Math.min(...b.map((p) => groundDistance(q.lab, p.lab)));
  let fromPalette = 0;
  for (const p of b) fromPalette += p.weight * Math.min(...a.map((q) => groundDistance(q.lab, p.lab)));
  return Math.max(fromQuery, fromPalette);
}

/**
 * EMD between `query` and `palette` (both normalised to total 1 first), in ΔE_OK units, 0..GROUND_CAP.
 * An empty side is GROUND_CAP away from everything.
 */
export function paletteDistance(query: readonly WeightedColor[], palette: readonly WeightedColor[]): number {
  const a = normalised(query);
  const b = normalised(palette);
  const n = a.length;
  const m = b.length;
  if (n === 0 || m === 0) return GROUND_CAP;
  const cost = new Float64Array(n * m);
  for (let i = 0; i < n; i++) for (let j = 0; j < m; j++) cost[i * m + j] = groundDistance(a[i].lab, b[j].lab);
  if (n === 1 || m === 1) {
    // One side has a single colour: all mass goes to (or comes from) it.
    let total = 0;
    for (let i = 0; i < n; i++) for (let j = 0; j < m; j++) total += cost[i * m + j] * (n === 1 ? b[j].weight : a[i].weight);
    return total;
  }
  return transport(
    a.map((c) => c.weight),
    b.map((c) => c.weight),
    cost,
  );
}

/**
 * Minimum-cost transportation from supplies `supply` (n) to demands `demand` (m), equal totals,
 * dense costs `cost[i * m + j]`. Successive shortest paths: each round finds the cheapest way
 * (through the residual graph, where flow already sent may be sent back) from a source with supply
 * left to a sink with demand left, with Dijkstra on costs reduced by node potentials, and pushes as
 * much as that path allows. Every round empties a source, fills a sink or cancels a flow, so it ends
 * after a few rounds; the bound only guards against floating-point cycling.
 */
function transport(supply: number[], demand: number[], cost: Float64Array): number {
  const n = supply.length;
  const m = demand.length;
  const v = n + m; // nodes: sources 0..n-1, sinks n..n+m-1
  const left = [...supply];
  const need = [...demand];
  const flow = new Float64Array(n * m);
  const potential = new Float64Array(v);
  const dist = new Float64Array(v);
  const parent = new Int32Array(v);
  const done = new Uint8Array(v);
  let total = 0;
  for (let round = 0; round < 4 * (n + m) + 50; round++) {
    let remaining = 0;
    for (let i = 0; i < n; i++) remaining += left[i];
    if (remaining <= 1e-9) break;
    dist.fill(Infinity);
    parent.fill(-1);
    done.fill(0);
    // Reduced cost of the (implicit) super-source's arc to each source with supply left; the
    // super-source keeps potential 0, and source potentials stay ≤ 0, so these are ≥ 0.
    for (let i = 0; i < n; i++) if (left[i] > EPS) dist[i] = -potential[i];
    for (;;) {
      let u = -1;
      for (let x = 0; x < v; x++) if (!done[x] && dist[x] < Infinity && (u < 0 || dist[x] < dist[u])) u = x;
      if (u < 0) break;
      done[u] = 1;
      if (u < n) {
        // source u → every sink (unbounded forward arcs)
        for (let j = 0; j < m; j++) {
          const w = n + j;
          const d = dist[u] + cost[u * m + j] + potential[u] - potential[w];
          if (d < dist[w] - EPS) {
            dist[w] = d;
            parent[w] = u;
          }
        }
      } else {
        // sink → source where flow can be sent back
        const j = u - n;
        for (let i = 0; i < n; i++) {
          if (flow[i * m + j] <= EPS) continue;
          const d = dist[u] - cost[i * m + j] + potential[u] - potential[i];
          if (d < dist[i] - EPS) {
            dist[i] = d;
            parent[i] = u;
          }
        }
      }
    }
    // The sink nearest in real cost (reduced distance + its potential) ends the shortest path.
    let sink = -1;
    const real = (j: number) => dist[n + j] + potential[n + j];
    for (let j = 0; j < m; j++) if (need[j] > EPS && dist[n + j] < Infinity && (sink < 0 || real(j) < real(sink))) sink = j;
    if (sink < 0) break;
    let maxDist = 0;
    for (let x = 0; x < v; x++) if (dist[x] < Infinity) maxDist = Math.max(maxDist, dist[x]);
    for (let x = 0; x < v; x++) potential[x] += dist[x] < Infinity ? dist[x] : maxDist;
    // Walk back to the source, finding how much the path carries.
    let amount = need[sink];
    let node = n + sink;
    while (parent[node] >= 0) {
      const prev = parent[node];
      if (prev >= n) amount = Math.min(amount, flow[node * m + (prev - n)]); // a backward arc sink→source
      node = prev;
    }
    amount = Math.min(amount, left[node]);
    if (amount <= EPS) break;
    left[node] -= amount;
    need[sink] -= amount;
    node = n + sink;
    while (parent[node] >= 0) {
      const prev = parent[node];
      if (prev < n) {
        flow[prev * m + (node - n)] += amount;
        total += amount * cost[prev * m + (node - n)];
      } else {
        flow[node * m + (prev - n)] -= amount;
        total -= amount * cost[node * m + (prev - n)];
      }
      node = prev;
    }
  }
  return Math.max(0, total);
}
