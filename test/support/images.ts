/**
 * Synthetic images with known content, for palette tests and benchmarks.
 *
 * Every generator is deterministic (seeded PRNG), so a test failure reproduces. Region images are
 * vertical stripes whose column counts give the exact pixel share of each colour; noise and
 * gradients are zero-mean, so each region's mean colour stays the declared one (clipping at 0/255
 * aside, which moves a mean by well under one level at the amplitudes used).
 *
 * Also home of `matchPalette`, the accuracy yardstick shared by the specs and the benchmarks.
 */
import { crc32 as zlibCrc32, deflateRawSync, gzipSync } from 'node:zlib';
import sharp from 'sharp';
import { deltaE2000Rgb } from '../../src/palette/delta-e';

export type Rgb = [number, number, number];
export interface ColorShare {
  hex: string;
  share: number;
}
export interface RawImage {
  data: Buffer;
  width: number;
  height: number;
  channels: 1 | 3 | 4;
}
export type OutputFormat = 'png' | 'jpeg' | 'webp' | 'avif' | 'gif' | 'tiff';

/** The reference palette of the accuracy targets: 60 % red, 30 % blue, 10 % cream. */
export const REFERENCE_COLORS: readonly ColorShare[] = [
  { hex: '#d43434', share: 0.6 },
  { hex: '#2a4d9b', share: 0.3 },
  { hex: '#f2e8cf', share: 0.1 },
];

export function hexToRgb(hex: string): Rgb {
  const m = /^#?([0-9a-f]{2})([0-9a-f]{2})([0-9a-f]{2})$/i.exec(hex);
  if (!m) throw new Error(`not a #rrggbb colour: ${hex}`);
  return [parseInt(m[1], 16), parseInt(m[2], 16), parseInt(m[3], 16)];
}

// Bound once: under Jest every lookup of the global `Math` crosses the sandbox's global-object
// interceptors (~40× slower), which made generating one noisy image take seconds.
const { imul, sqrt, log, cos, exp, round: roundNumber, PI } = Math;

/** mulberry32: tiny, fast, good enough for test noise. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = imul(t ^ (t >>> 15), t | 1);
    t ^= t + imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function gaussian(rand: () => number): number {
  const u = rand() || Number.EPSILON;
  return sqrt(-2 * log(u)) * cos(2 * PI * rand());
}

const clamp8 = (v: number): number => (v < 0 ? 0 : v > 255 ? 255 : roundNumber(v));

export interface RegionOptions {
  width?: number;
  height?: number;
  /** Standard deviation of per-channel Gaussian noise, in 0..255 units. */
  noise?: number;
  /** Half-range of a left-to-right lightness ramp inside each region (zero-mean), in 0..255 units. */
  gradient?: number;
  seed?: number;
  /** Add a fully transparent stripe of this share (garbage colours under alpha 0) after the regions. */
  transparentShare?: number;
}

/**
 * Vertical stripes, one per colour, `share` of the columns each (the last one takes the rounding
 * rest). With `transparentShare`, the declared shares are shares of the opaque pixels.
 */
export function regionsRaw(colors: readonly ColorShare[], opts: RegionOptions = {}): RawImage {
  const width = opts.width ?? 512;
  const height = opts.height ?? 512;
  const rand = seededRandom(opts.seed ?? 1);
  const transparentCols = Math.round(width * (opts.transparentShare ?? 0));
  const opaqueCols = width - transparentCols;
  const channels = 4;
  const data = Buffer.alloc(width * height * channels);

  const bounds: number[] = [];
  let acc = 0;
  for (const c of colors) {
    acc += c.share;
    bounds.push(Math.round(acc * opaqueCols));
  }
  bounds[bounds.length - 1] = opaqueCols;

  let start = 0;
  colors.forEach((c, i) => {
    const [r, g, b] = hexToRgb(c.hex);
    const end = bounds[i];
    const span = Math.max(1, end - start);
    for (let x = start; x < end; x++) {
      const ramp = opts.gradient ? opts.gradient * ((2 * (x - start + 0.5)) / span - 1) : 0;
      for (let y = 0; y < height; y++) {
        const o = (y * width + x) * channels;
        const n = opts.noise ?? 0;
        data[o] = clamp8(r + ramp + (n ? n * gaussian(rand) : 0));
        data[o + 1] = clamp8(g + ramp + (n ? n * gaussian(rand) : 0));
        data[o + 2] = clamp8(b + ramp + (n ? n * gaussian(rand) : 0));
        data[o + 3] = 255;
      }
    }
    start = end;
  });
  for (let x = opaqueCols; x < width; x++) {
    for (let y = 0; y < height; y++) {
      const o = (y * width + x) * channels;
      data[o] = (rand() * 256) | 0;
      data[o + 1] = (rand() * 256) | 0;
      data[o + 2] = (rand() * 256) | 0;
      data[o + 3] = 0;
    }
  }
  return { data, width, height, channels };
}

/**
 * Something a photo might look like: a sky-to-ground vertical gradient, a few soft coloured
 * blobs, and sensor-like noise. Not meant to have known shares, only realistic statistics.
 */
export function photoLikeRaw(width = 1024, height = 1024, seed = 7): RawImage {
  const rand = seededRandom(seed);
  const channels = 3;
  const data = Buffer.alloc(width * height * channels);
  const sky: Rgb = [118, 168, 214];
  const ground: Rgb = [92, 112, 58];
  const blobs = Array.from({ length: 6 }, () => ({
    cx: rand() * width,
    cy: rand() * height,
    radius: (0.08 + rand() * 0.18) * Math.min(width, height),
    color: [rand() * 255, rand() * 255, rand() * 255] as Rgb,
  }));
  for (let y = 0; y < height; y++) {
    const t = y / (height - 1);
    for (let x = 0; x < width; x++) {
      let r = sky[0] + (ground[0] - sky[0]) * t;
      let g = sky[1] + (ground[1] - sky[1]) * t;
      let b = sky[2] + (ground[2] - sky[2]) * t;
      for (const blob of blobs) {
        const d2 = ((x - blob.cx) ** 2 + (y - blob.cy) ** 2) / blob.radius ** 2;
        if (d2 < 4) {
          const w = exp(-d2 * 1.5);
          r += (blob.color[0] - r) * w;
          g += (blob.color[1] - g) * w;
          b += (blob.color[2] - b) * w;
        }
      }
      const o = (y * width + x) * channels;
      data[o] = clamp8(r + 6 * gaussian(rand));
      data[o + 1] = clamp8(g + 6 * gaussian(rand));
      data[o + 2] = clamp8(b + 6 * gaussian(rand));
    }
  }
  return { data, width, height, channels };
}

function fromRaw(raw: RawImage): sharp.Sharp {
  return sharp(raw.data, { raw: { width: raw.width, height: raw.height, channels: raw.channels } });
}

/** Encodes raw pixels; JPEG at quality 92 with 4:4:4 chroma so stripes keep their colours. */
export function encode(raw: RawImage, format: OutputFormat): Promise<Buffer> {
  const image = fromRaw(raw);
  switch (format) {
    case 'png':
      return image.png({ compressionLevel: 6 }).toBuffer();
    case 'jpeg':
      return image.jpeg({ quality: 92, chromaSubsampling: '4:4:4' }).toBuffer();
    case 'webp':
      return image.webp({ quality: 92 }).toBuffer();
    case 'avif':
      return image.avif({ quality: 80, chromaSubsampling: '4:4:4', effort: 0 }).toBuffer();
    case 'gif':
      return image.gif().toBuffer();
    case 'tiff':
      return image.tiff({ compression: 'lzw' }).toBuffer();
  }
}

/** The reference colours as stripes, in the given format. */
export function referenceImage(format: OutputFormat = 'png', opts: RegionOptions = {}): Promise<Buffer> {
  return encode(regionsRaw(REFERENCE_COLORS, opts), format);
}

/** A single-channel (greyscale) PNG with two grey levels: 70 % #404040, 30 % #c0c0c0. */
export function greyscalePng(width = 256, height = 256): Promise<Buffer> {
  const data = Buffer.alloc(width * height);
  const split = Math.round(width * 0.7);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) data[y * width + x] = x < split ? 0x40 : 0xc0;
  }
  return sharp(data, { raw: { width, height, channels: 1 } }).toColourspace('b-w').png().toBuffer();
}

/** The reference colours as a 16-bit-per-channel PNG. */
export function png16(opts: RegionOptions = {}): Promise<Buffer> {
  return fromRaw(regionsRaw(REFERENCE_COLORS, opts)).toColourspace('rgb16').png().toBuffer();
}

/**
 * The reference colours as a CMYK JPEG with an embedded CMYK profile (what print workflows and
 * stock photos produce). The round trip through the CMYK gamut moves saturated colours by a few
 * ΔE00, so compare against a colour-managed decode of the file, not against REFERENCE_COLORS.
 */
export function cmykJpeg(opts: RegionOptions = {}): Promise<Buffer> {
  return fromRaw(regionsRaw(REFERENCE_COLORS, opts))
    .withIccProfile('cmyk')
    .jpeg({ quality: 95, chromaSubsampling: '4:4:4' })
    .toBuffer();
}

/**
 * An animated GIF whose frames have different single colours; palettes should describe the
 * first frame only.
 */
export async function animatedGif(frameHexes: readonly string[], width = 64, height = 64): Promise<Buffer> {
  const frames = frameHexes.map((hex) => {
    const [r, g, b] = hexToRgb(hex);
    return sharp({ create: { width, height, channels: 3, background: { r, g, b } } }).png().toBuffer();
  });
  return sharp(await Promise.all(frames), { join: { animated: true } })
    .gif({ delay: 100, loop: 0 })
    .toBuffer();
}

/**
 * A JPEG stored `storedWidth`×`storedHeight` with EXIF orientation 6 (rotate 90° clockwise to
 * display), so its displayed size is `storedHeight`×`storedWidth`.
 */
export function exifRotatedJpeg(storedWidth = 300, storedHeight = 100): Promise<Buffer> {
  return fromRaw(regionsRaw(REFERENCE_COLORS, { width: storedWidth, height: storedHeight }))
    .jpeg({ quality: 92, chromaSubsampling: '4:4:4' })
    .withMetadata({ orientation: 6 })
    .toBuffer();
}

/** A 1×1 PNG of one colour. */
export function onePixelPng(hex = '#2a4d9b'): Promise<Buffer> {
  const [r, g, b] = hexToRgb(hex);
  return sharp({ create: { width: 1, height: 1, channels: 3, background: { r, g, b } } }).png().toBuffer();
}

/** A large image of the reference stripes (flat colours compress to a small file). */
export function hugePng(side = 8000): Promise<Buffer> {
  const colors = REFERENCE_COLORS;
  const stripes = colors.map((c, i) => {
    const left = Math.round(colors.slice(0, i).reduce((s, x) => s + x.share, 0) * side);
    const right = i === colors.length - 1 ? side : Math.round(colors.slice(0, i + 1).reduce((s, x) => s + x.share, 0) * side);
    const [r, g, b] = hexToRgb(c.hex);
    return {
      input: { create: { width: right - left, height: side, channels: 3 as const, background: { r, g, b } } },
      left,
      top: 0,
    };
  });
  return sharp({ create: { width: side, height: side, channels: 3, background: '#000000' } })
    .composite(stripes)
    .png({ compressionLevel: 1 })
    .toBuffer();
}

const CRC_TABLE = (() => {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
})();

function crc32(bytes: Uint8Array): number {
  let c = 0xffffffff;
  for (const byte of bytes) c = CRC_TABLE[(c ^ byte) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

/**
 * A decompression bomb stand-in: a tiny valid PNG whose header claims `side`×`side` pixels
 * (IHDR patched, CRC fixed). Any decoder that trusts the header would allocate side² pixels.
 */
export async function pixelBombPng(side = 20000): Promise<Buffer> {
  const png = Buffer.from(await onePixelPng());
  // Signature (8) + IHDR length (4) + "IHDR" (4): width at 16, height at 20, CRC after 13 data bytes.
  png.writeUInt32BE(side, 16);
  png.writeUInt32BE(side, 20);
  png.writeUInt32BE(crc32(png.subarray(12, 29)), 29);
  return png;
}

/**
 * A 16-bit RGBA, interlaced PNG whose header claims `width`×`height` (a 1×1 image with its IHDR
 * patched, CRC fixed): a few dozen bytes on disk announcing width × height × 8 bytes of pixels, which
 * an interlaced decode holds whole. Below the pixel limit, above the decoded-bytes one.
 */
export async function deepPngBomb(width = 8000, height = 8000): Promise<Buffer> {
  const png = Buffer.from(
    await sharp({ create: { width: 1, height: 1, channels: 4, background: { r: 212, g: 52, b: 52, alpha: 1 } } })
      .toColourspace('rgb16')
      .png()
      .toBuffer(),
  );
  // IHDR data at 16: width, height, bit depth (16), colour type (6 = RGBA), compression, filter, interlace.
  if (png[24] !== 16 || png[25] !== 6) throw new Error(`expected a 16-bit RGBA PNG, got depth ${png[24]} type ${png[25]}`);
  png.writeUInt32BE(width, 16);
  png.writeUInt32BE(height, 20);
  png[28] = 1; // Adam7
  png.writeUInt32BE(crc32(png.subarray(12, 29)), 29);
  return png;
}

/**
 * A GIF of a few dozen bytes whose screen and only frame claim `side`×`side` pixels (a 1×1 GIF with
 * both descriptors patched): GIF decoders paint frames onto a full RGBA canvas of that size.
 */
export async function hugeCanvasGif(side = 10_000): Promise<Buffer> {
  if (side > 0xffff) throw new Error('GIF dimensions are 16-bit');
  const gif = Buffer.from(await sharp({ create: { width: 1, height: 1, channels: 3, background: '#2a4d9b' } }).gif().toBuffer());
  // Logical screen descriptor after the 6-byte signature: width, height (little-endian), flags.
  gif.writeUInt16LE(side, 6);
  gif.writeUInt16LE(side, 8);
  let o = 13 + (gif[10] & 0x80 ? 3 * 2 ** ((gif[10] & 7) + 1) : 0);
  // Skip extension blocks (0x21, label, sub-blocks ending with a 0 length) up to the image descriptor.
  while (gif[o] === 0x21) {
    o += 2;
    while (gif[o] !== 0) o += gif[o] + 1;
    o++;
  }
  if (gif[o] !== 0x2c) throw new Error(`no image descriptor at ${o}`);
  gif.writeUInt16LE(side, o + 5);
  gif.writeUInt16LE(side, o + 7);
  return gif;
}

/** A small, valid SVG (a red square): what libvips' SVG loader would happily render. */
export const SVG = '<svg xmlns="http://www.w3.org/2000/svg" width="64" height="64"><rect width="64" height="64" fill="#d43434"/></svg>';

/**
 * A gzip stream (svgz) whose header spells an AVIF `ftyp` box at bytes 4–11: the mtime field is
 * `ftyp`, XFL and OS are `av`, and the FEXTRA length `if` (26 217 bytes of padding follow).
 */
function gzipPassingForAvif(text: string): Buffer {
  const data = Buffer.from(text);
  const header = Buffer.concat([Buffer.from([0x1f, 0x8b, 8, 4]), Buffer.from('ftypavif', 'latin1')]);
  const extra = Buffer.alloc(header.readUInt16LE(10), 0x20);
  const trailer = Buffer.alloc(8);
  trailer.writeUInt32LE(zlibCrc32(data), 0);
  trailer.writeUInt32LE(data.length, 4);
  return Buffer.concat([header, extra, deflateRawSync(data), trailer]);
}

/**
 * SVG dressed to pass a format check: files libvips decodes as SVG. The first four carry `ftyp` +
 * an AVIF brand at bytes 4–11 (what a magic-byte check for AVIF looks at); the others are plain SVG
 * variants a check must not let through either.
 */
export function svgDisguises(): Record<string, Buffer> {
  return {
    '<!--ftypavif--> + SVG': Buffer.from(`<!--ftypavif-->${SVG}`),
    '<!--ftypavis--> + SVG': Buffer.from(`<!--ftypavis-->${SVG}`),
    'a comment with avif as a compatible brand + SVG': Buffer.from(`<!--ftypmif10000avif-->${SVG}`),
    'gzip’d SVG whose header spells ftypavif': gzipPassingForAvif(SVG),
    'SVG with an XML prolog': Buffer.from(`<?xml version="1.0" encoding="UTF-8"?>\n${SVG}`),
    'SVG after a BOM and whitespace': Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from(`  \n\t${SVG}`)]),
    'gzip’d SVG (svgz)': gzipSync(SVG),
  };
}

/** The first `fraction` of an encoded image: a transfer cut short. */
export function truncate(image: Buffer, fraction = 0.5): Buffer {
  return image.subarray(0, Math.floor(image.length * fraction));
}

export interface PaletteEntry {
  hex: string;
  rgb: readonly [number, number, number];
  proportion: number;
}

export interface ColorMatch {
  expected: ColorShare;
  found: PaletteEntry | undefined;
  /** CIEDE2000 between the expected colour and the palette colour matched to it. */
  deltaE: number;
  /** |expected share − found proportion|. */
  shareError: number;
}

/**
 * Pairs each expected colour with a distinct palette colour, closest pairs first (greedy on
 * ΔE00), and reports how far off each is. An expected colour left without a partner gets
 * deltaE = Infinity and its whole share as the error.
 */
export function matchPalette(expected: readonly ColorShare[], palette: readonly PaletteEntry[]): ColorMatch[] {
  const pairs = expected.flatMap((e, i) =>
    palette.map((p, j) => ({ i, j, deltaE: deltaE2000Rgb(hexToRgb(e.hex), p.rgb) })),
  );
  pairs.sort((a, b) => a.deltaE - b.deltaE);
  const byExpected = new Map<number, { j: number; deltaE: number }>();
  const used = new Set<number>();
  for (const pair of pairs) {
    if (byExpected.has(pair.i) || used.has(pair.j)) continue;
    byExpected.set(pair.i, pair);
    used.add(pair.j);
  }
  return expected.map((e, i) => {
    const pair = byExpected.get(i);
    const found = pair ? palette[pair.j] : undefined;
    return {
      expected: e,
      found,
      deltaE: pair ? pair.deltaE : Infinity,
      shareError: Math.abs(e.share - (found?.proportion ?? 0)),
    };
  });
}

/** Mean colour of the columns [from, to) of an RGB(A) raw image: ground truth for a stripe. */
export function meanOfColumns(raw: RawImage, from: number, to: number): Rgb {
  const sum = [0, 0, 0];
  let n = 0;
  for (let y = 0; y < raw.height; y++) {
    for (let x = from; x < to; x++) {
      const o = (y * raw.width + x) * raw.channels;
      for (let c = 0; c < 3; c++) sum[c] += raw.data[o + c];
      n++;
    }
  }
  return [Math.round(sum[0] / n), Math.round(sum[1] / n), Math.round(sum[2] / n)];
}

/**
 * The accuracy suite: images with known colour shares, shared by the specs (which assert the
 * targets) and the benchmark (which compares quantizers on it).
 */
export const ACCURACY_CASES: readonly { name: string; colors: readonly ColorShare[]; format: OutputFormat; opts: RegionOptions }[] = [
  { name: 'flat PNG', colors: REFERENCE_COLORS, format: 'png', opts: {} },
  { name: 'noise σ12 PNG', colors: REFERENCE_COLORS, format: 'png', opts: { noise: 12, seed: 11 } },
  { name: 'gradient ±16 PNG', colors: REFERENCE_COLORS, format: 'png', opts: { gradient: 16 } },
  { name: 'noise σ10 + gradient ±10 JPEG', colors: REFERENCE_COLORS, format: 'jpeg', opts: { noise: 10, gradient: 10, seed: 12 } },
  { name: 'noise σ8 WebP', colors: REFERENCE_COLORS, format: 'webp', opts: { noise: 8, seed: 13 } },
  { name: '40 % transparent PNG', colors: REFERENCE_COLORS, format: 'png', opts: { transparentShare: 0.4, noise: 6, seed: 14 } },
  {
    name: 'five colours, noise σ8 PNG',
    colors: [
      { hex: '#1b998b', share: 0.35 },
      { hex: '#2d3047', share: 0.25 },
      { hex: '#fffd82', share: 0.2 },
      { hex: '#ff9b71', share: 0.12 },
      { hex: '#e84855', share: 0.08 },
    ],
    format: 'png',
    opts: { noise: 8, seed: 15 },
  },
  {
    name: 'close hues (ΔE≈10), noise σ5 PNG',
    colors: [
      { hex: '#3a7d44', share: 0.5 },
      { hex: '#5c9e4f', share: 0.3 },
      { hex: '#9dc08b', share: 0.2 },
    ],
    format: 'png',
    opts: { noise: 5, seed: 16 },
  },
];
