import sharp from 'sharp';
import type { AspectRatio } from '../../common/generation.model';
import { hash32 } from './emulator-random';

export type Rgb = [number, number, number];

/** Output sizes of Gemini 2.5 Flash Image per aspect ratio (what the real model returns). */
export const IMAGE_SIZES: Record<AspectRatio, { width: number; height: number }> = {
  '1:1': { width: 1024, height: 1024 },
  '3:4': { width: 864, height: 1184 },
  '4:3': { width: 1184, height: 864 },
  '9:16': { width: 768, height: 1344 },
  '16:9': { width: 1344, height: 768 },
};

export const NAMED_COLORS: Readonly<Record<string, Rgb>> = {
  red: [214, 40, 40],
  crimson: [190, 20, 50],
  maroon: [128, 20, 30],
  green: [46, 160, 67],
  lime: [140, 220, 50],
  olive: [128, 128, 30],
  blue: [30, 90, 220],
  navy: [20, 30, 100],
  cyan: [30, 200, 220],
  teal: [0, 128, 128],
  turquoise: [64, 210, 190],
  yellow: [245, 210, 40],
  gold: [212, 175, 55],
  orange: [245, 140, 30],
  coral: [250, 120, 90],
  salmon: [245, 150, 120],
  purple: [130, 50, 170],
  violet: [150, 90, 220],
  indigo: [75, 30, 130],
  magenta: [220, 40, 180],
  lavender: [190, 170, 230],
  pink: [240, 130, 175],
  brown: [130, 80, 40],
  tan: [210, 180, 140],
  beige: [230, 215, 180],
  ivory: [250, 248, 232],
  black: [15, 15, 15],
  white: [245, 245, 245],
  grey: [128, 128, 128],
  gray: [128, 128, 128],
  silver: [192, 192, 192],
};

/**
 * Share of the picture per colour, by how many colours the prompt names: the first named colour
 * covers the largest area. More than six colours are ignored (the picture would be confetti).
 */
const SHARES: readonly (readonly number[])[] = [
  [],
  [1],
  [0.65, 0.35],
  [0.6, 0.3, 0.1],
  [0.5, 0.25, 0.15, 0.1],
  [0.45, 0.25, 0.15, 0.1, 0.05],
  [0.4, 0.25, 0.15, 0.1, 0.06, 0.04],
];
export const MAX_COLORS = SHARES.length - 1;

const SHADES: Record<string, number> = { light: 0.45, pale: 0.6, bright: 0.2, dark: -0.45, deep: -0.3 };
const COLOR_TOKEN = new RegExp(
  `#([0-9a-f]{6})\\b|\\b(?:(${Object.keys(SHADES).join('|')})[\\s-]+)?(${Object.keys(NAMED_COLORS).join('|')})\\b`,
  'gi',
);

function shade([r, g, b]: Rgb, amount: number): Rgb {
  // Positive amounts blend towards white, negative towards black.
  const target = amount > 0 ? 255 : 0;
  const t = Math.abs(amount);
  return [r, g, b].map((c) => Math.round(c + (target - c) * t)) as Rgb;
}

function hslToRgb(h: number, s: number, l: number): Rgb {
  const k = (n: number) => (n + h / 30) % 12;
  const a = s * Math.min(l, 1 - l);
  const f = (n: number) => l - a * Math.max(-1, Math.min(k(n) - 3, Math.min(9 - k(n), 1)));
  return [f(0), f(8), f(4)].map((v) => Math.round(v * 255)) as Rgb;
}

/**
 * The colours a prompt asks for, in order of first mention (colour words, optionally shaded by
 * light/dark/pale/deep/bright, and `#rrggbb`); without any, three colours derived from its hash.
 */
export function promptColors(prompt: string): { colors: Rgb[]; named: boolean } {
  const colors: Rgb[] = [];
  const seen = new Set<string>();
  for (const [, hex, shadeWord, name] of prompt.matchAll(COLOR_TOKEN)) {
    let rgb: Rgb;
    if (hex) rgb = [0, 2, 4].map((i) => parseInt(hex.slice(i, i + 2), 16)) as Rgb;
    else {
      rgb = NAMED_COLORS[name.toLowerCase()];
      if (shadeWord) rgb = shade(rgb, SHADES[shadeWord.toLowerCase()]);
    }
    const key = rgb.join(',');
    if (!seen.has(key) && colors.length < MAX_COLORS) {
      seen.add(key);
      colors.push(rgb);
    }
  }
  if (colors.length > 0) return { colors, named: true };
  const h = hash32(prompt);
  const hue = h % 360;
  return {
    colors: [0, 150, 210].map((offset, i) =>
      hslToRgb((hue + offset) % 360, 0.55 + ((h >>> (8 + i * 3)) % 4) * 0.07, 0.35 + ((h >>> (20 + i * 3)) % 4) * 0.08),
    ),
    named: false,
  };
}

export interface Picture {
  width: number;
  height: number;
  /** Packed RGB, row-major. */
  pixels: Buffer;
}

/**
 * Paints the picture a prompt describes: the first colour as a background with a soft vertical
 * gradient, the second as a disc, the rest as bands along the bottom, each covering its share of
 * the area, plus mild luminance noise so it is not a flat test card. `solid` → one flat colour.
 */
export function paintPicture(prompt: string, aspectRatio: AspectRatio): Picture {
  const { width, height } = IMAGE_SIZES[aspectRatio];
  const { colors } = promptColors(prompt);
  const solid = /\bsolid\b/i.test(prompt);
  const pixels = Buffer.alloc(width * height * 3);
  const seed = hash32(`${aspectRatio}\n${prompt}`);

  if (solid) {
    const [r, g, b] = colors[0];
    for (let i = 0; i < pixels.length; i += 3) {
      pixels[i] = r;
      pixels[i + 1] = g;
      pixels[i + 2] = b;
    }
    return { width, height, pixels };
  }

  const shares = SHARES[colors.length];
  // Bands from the third colour on, stacked upwards from the bottom edge.
  const rowColor = new Int8Array(height).fill(0);
  let bottom = height;
  for (let c = colors.length - 1; c >= 2; c--) {
    const rows = Math.round(shares[c] * height);
    rowColor.fill(c, bottom - rows, bottom);
    bottom -= rows;
  }
  const top = bottom; // rows [0, top) hold the background and the disc

  let disc: { cx: number; cy: number; rx: number; ry: number } | undefined;
  if (colors.length >= 2) {
    const area = shares[1] * width * height;
    const maxRx = 0.48 * width;
    const maxRy = 0.48 * top;
    let rx = Math.sqrt(area / Math.PI);
    let ry = rx;
    if (ry > maxRy) {
      ry = maxRy;
      rx = area / (Math.PI * ry);
    }
    if (rx > maxRx) rx = maxRx; // cannot fit its full share: the picture is too narrow for it
    const slack = width - 2 * rx - 0.04 * width;
    const cx = 0.02 * width + rx + (slack > 0 ? (seed % 1000) / 1000 * slack : 0);
    disc = { cx, cy: top / 2, rx, ry };
  }

  // Global lookups (Math.*) are slow inside Jest's vm context, so the per-pixel loop uses only
  // locals, and the clamped view does the 0..255 clamping and rounding.
  const out = new Uint8ClampedArray(pixels.buffer, pixels.byteOffset, pixels.length);
  const [r1, g1, b1] = colors[1] ?? colors[0];
  let noise = seed || 1;
  let i = 0;
  for (let y = 0; y < height; y++) {
    const inTop = y < top;
    // Background brightness runs from +6 % at the top edge to -6 % at the horizon.
    const gradient = 1.06 - (0.12 * y) / Math.max(1, top - 1);
    const [r0, g0, b0] = inTop ? colors[0].map((v) => v * gradient) : colors[rowColor[y]];
    let x0 = width;
    let x1 = -1;
    if (inTop && disc) {
      const dy = (y + 0.5 - disc.cy) / disc.ry;
      if (Math.abs(dy) <= 1) {
        const dx = disc.rx * Math.sqrt(1 - dy * dy);
        x0 = Math.round(disc.cx - dx);
        x1 = Math.round(disc.cx + dx) - 1;
      }
    }
    for (let x = 0; x < width; x++) {
      const onDisc = x >= x0 && x <= x1;
      // xorshift32: cheap deterministic noise, ±6 levels on all channels (luminance only)
      noise ^= noise << 13;
      noise ^= noise >>> 17;
      noise ^= noise << 5;
      const jitter = ((noise >>> 0) % 13) - 6;
      out[i++] = (onDisc ? r1 : r0) + jitter;
      out[i++] = (onDisc ? g1 : g0) + jitter;
      out[i++] = (onDisc ? b1 : b0) + jitter;
    }
  }
  return { width, height, pixels };
}

/** The PNG for a prompt and aspect ratio: same inputs, same bytes. */
export async function renderPng(prompt: string, aspectRatio: AspectRatio): Promise<Buffer> {
  const { width, height, pixels } = paintPicture(prompt, aspectRatio);
  return sharp(pixels, { raw: { width, height, channels: 3 } }).png().toBuffer();
}

/**
 * A bounded LRU of rendered PNGs, so load tests repeating prompts do not spend CPU repainting.
 * It holds promises, so concurrent requests for the same picture share one render.
 */
export class PngCache {
  private readonly entries = new Map<string, Promise<Buffer>>();
  hits = 0;
  renders = 0;

  constructor(
    private readonly capacity = 64,
    private readonly render: (prompt: string, aspectRatio: AspectRatio) => Promise<Buffer> = renderPng,
  ) {}

  get size(): number {
    return this.entries.size;
  }

  get(prompt: string, aspectRatio: AspectRatio): Promise<Buffer> {
    const key = `${aspectRatio}\n${prompt}`;
    const cached = this.entries.get(key);
    if (cached) {
      this.hits++;
      this.entries.delete(key); // re-insert: Map order is the recency order
      this.entries.set(key, cached);
      return cached;
    }
    this.renders++;
    const png = this.render(prompt, aspectRatio);
    this.entries.set(key, png);
    png.catch(() => {
      if (this.entries.get(key) === png) this.entries.delete(key);
    });
    if (this.entries.size > this.capacity) this.entries.delete(this.entries.keys().next().value as string);
    return png;
  }
}
