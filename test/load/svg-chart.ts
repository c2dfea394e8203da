/**
 * Line charts as plain SVG text: axes with round ticks, one polyline (with dots) per series, a
 * legend, optional horizontal reference lines. No browser and no chart library: the harness writes
 * the report's figures itself.
 */

export interface Series {
  name: string;
  /** [x, y]; a null y breaks the line (a missed sample). */
  points: readonly (readonly [number, number | null])[];
  color?: string;
  dashed?: boolean;
}

export interface ChartOptions {
  title: string;
  xLabel: string;
  yLabel: string;
  series: Series[];
  /** Horizontal reference lines (budgets, limits). */
  hLines?: { y: number; label: string; color?: string }[];
  xMin?: number;
  xMax?: number;
  yMin?: number;
  yMax?: number;
  /** Logarithmic y axis (latencies spanning 1 ms to 30 s); values ≤ 0 are drawn at the bottom. */
  yLog?: boolean;
  width?: number;
  height?: number;
}

const PALETTE = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b', '#e377c2', '#17becf'];
const MARGIN = { top: 40, right: 20, bottom: 70, left: 64 };

export function escapeXml(text: string): string {
  return text.replace(/[<>&"']/g, (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', '"': '&quot;', "'": '&apos;' })[c]!);
}

/** About `count` round tick values (1, 2, 2.5, 5 × 10^k steps) covering [min, max]. */
export function niceTicks(min: number, max: number, count = 6): number[] {
  if (!(max > min)) return [min];
  const raw = (max - min) / Math.max(1, count - 1);
  const magnitude = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * magnitude).find((s) => s >= raw) ?? 10 * magnitude;
  const ticks: number[] = [];
  const first = Math.ceil(min / step - 1e-9);
  const last = Math.floor(max / step + 1e-9);
  // Integer multiples of the step, trimmed to 12 significant digits: 0.6, not 0.6000000000000001.
  for (let k = first; k <= last && ticks.length < 100; k++) ticks.push(Number((k * step).toPrecision(12)) || 0);
  return ticks;
}

/** Powers of ten from min to max (both > 0). */
export function logTicks(min: number, max: number): number[] {
  const ticks: number[] = [];
  for (let e = Math.ceil(Math.log10(min) - 1e-9); e <= Math.floor(Math.log10(max) + 1e-9) && ticks.length < 20; e++) ticks.push(Number((10 ** e).toPrecision(12)));
  return ticks;
}

function format(v: number): string {
  if (Math.abs(v) >= 1000) return `${Math.round(v / 100) / 10}k`.replace('.0k', 'k');
  return String(Math.round(v * 100) / 100);
}

export function lineChart(opts: ChartOptions): string {
  const width = opts.width ?? 720;
  const height = opts.height ?? 340;
  const plotW = width - MARGIN.left - MARGIN.right;
  const plotH = height - MARGIN.top - MARGIN.bottom;
  const xs = opts.series.flatMap((s) => s.points.map(([x]) => x));
  const ys = opts.series.flatMap((s) => s.points.map(([, y]) => y).filter((y): y is number => y !== null && Number.isFinite(y)));
  ys.push(...(opts.hLines ?? []).map((h) => h.y));
  const xMin = opts.xMin ?? (xs.length ? Math.min(...xs) : 0);
  const xMaxRaw = opts.xMax ?? (xs.length ? Math.max(...xs) : 1);
  const xMax = xMaxRaw > xMin ? xMaxRaw : xMin + 1;
  const positive = ys.filter((y) => y > 0);
  const yMin = opts.yLog ? (opts.yMin ?? 10 ** Math.floor(Math.log10(positive.length ? Math.min(...positive) : 1))) : (opts.yMin ?? Math.min(0, ...ys));
  const yMaxRaw = opts.yMax ?? (opts.yLog ? 10 ** Math.ceil(Math.log10(Math.max(yMin * 10, ...positive))) : ys.length ? Math.max(...ys) * 1.08 : 1);
  const yMax = yMaxRaw > yMin ? yMaxRaw : yMin + 1;
  const xTicks = niceTicks(xMin, xMax);
  const yTicks = opts.yLog ? logTicks(yMin, yMax) : niceTicks(yMin, yMax);
  // The y mapping works in log10 space on a log axis.
  const ty = (y: number) => (opts.yLog ? Math.log10(Math.max(y, yMin)) : y);
  const [lo, hi] = [ty(yMin), ty(yMax)];
  const sx = (x: number) => MARGIN.left + ((x - xMin) / (xMax - xMin)) * plotW;
  const sy = (y: number) => MARGIN.top + plotH - ((Math.min(Math.max(ty(y), lo), hi) - lo) / (hi - lo)) * plotH;
  const out: string[] = [];
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="12">`,
    `<rect width="${width}" height="${height}" fill="#ffffff"/>`,
    `<text x="${width / 2}" y="22" text-anchor="middle" font-size="15" font-weight="bold">${escapeXml(opts.title)}</text>`,
  );
  for (const t of yTicks) {
    if (t < yMin || t > yMax) continue;
    out.push(
      `<line x1="${MARGIN.left}" x2="${MARGIN.left + plotW}" y1="${sy(t).toFixed(1)}" y2="${sy(t).toFixed(1)}" stroke="#e5e5e5"/>`,
      `<text x="${MARGIN.left - 6}" y="${(sy(t) + 4).toFixed(1)}" text-anchor="end">${format(t)}</text>`,
    );
  }
  for (const t of xTicks) {
    if (t < xMin || t > xMax) continue;
    out.push(
      `<line x1="${sx(t).toFixed(1)}" x2="${sx(t).toFixed(1)}" y1="${MARGIN.top + plotH}" y2="${MARGIN.top + plotH + 4}" stroke="#333"/>`,
      `<text x="${sx(t).toFixed(1)}" y="${MARGIN.top + plotH + 18}" text-anchor="middle">${format(t)}</text>`,
    );
  }
  out.push(
    `<rect x="${MARGIN.left}" y="${MARGIN.top}" width="${plotW}" height="${plotH}" fill="none" stroke="#333"/>`,
    `<text x="${MARGIN.left + plotW / 2}" y="${MARGIN.top + plotH + 36}" text-anchor="middle">${escapeXml(opts.xLabel)}</text>`,
    `<text transform="translate(16 ${MARGIN.top + plotH / 2}) rotate(-90)" text-anchor="middle">${escapeXml(opts.yLabel)}</text>`,
  );
  for (const h of opts.hLines ?? []) {
    const y = sy(h.y).toFixed(1);
    const color = h.color ?? '#999';
    out.push(
      `<line x1="${MARGIN.left}" x2="${MARGIN.left + plotW}" y1="${y}" y2="${y}" stroke="${color}" stroke-dasharray="6 4"/>`,
      `<text x="${MARGIN.left + plotW - 4}" y="${Number(y) - 4}" text-anchor="end" fill="${color}">${escapeXml(h.label)}</text>`,
    );
  }
  // Legend below the plot, items flowing left to right and wrapping; the picture grows to fit.
  let lx = MARGIN.left;
  let ly = MARGIN.top + plotH + 58;
  opts.series.forEach((s, i) => {
    const color = s.color ?? PALETTE[i % PALETTE.length];
    const segments: string[][] = [[]];
    for (const [x, y] of s.points) {
      if (y === null || !Number.isFinite(y)) {
        if (segments[segments.length - 1].length > 0) segments.push([]);
        continue;
      }
      segments[segments.length - 1].push(`${sx(x).toFixed(1)},${sy(y).toFixed(1)}`);
    }
    for (const seg of segments) {
      if (seg.length === 0) continue;
      out.push(`<polyline fill="none" stroke="${color}" stroke-width="2"${s.dashed ? ' stroke-dasharray="5 3"' : ''} points="${seg.join(' ')}"/>`);
      if (s.points.length <= 40) for (const p of seg) out.push(`<circle cx="${p.split(',')[0]}" cy="${p.split(',')[1]}" r="3" fill="${color}"/>`);
    }
    const itemWidth = 30 + s.name.length * 6.6;
    if (lx > MARGIN.left && lx + itemWidth > MARGIN.left + plotW) {
      lx = MARGIN.left;
      ly += 18;
    }
    out.push(
      `<line x1="${lx}" x2="${lx + 18}" y1="${ly - 4}" y2="${ly - 4}" stroke="${color}" stroke-width="3"${s.dashed ? ' stroke-dasharray="5 3"' : ''}/>`,
      `<text x="${lx + 22}" y="${ly}">${escapeXml(s.name)}</text>`,
    );
    lx += itemWidth;
  });
  const fullHeight = Math.max(height, ly + 14);
  out[0] = out[0].replace(`height="${height}" viewBox="0 0 ${width} ${height}"`, `height="${fullHeight}" viewBox="0 0 ${width} ${fullHeight}"`);
  out[1] = `<rect width="${width}" height="${fullHeight}" fill="#ffffff"/>`;
  out.push('</svg>');
  return `${out.join('\n')}\n`;
}
