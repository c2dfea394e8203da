/**
 * The palette engine, run inside Piscina worker threads (no Nest here).
 *
 * decode → downscale → quantize:
 *   1. sharp decodes and shrinks the image to at most ANALYSIS_SIDE² RGBA pixels (shrink-on-load for
 *      JPEG/WebP), after EXIF auto-orientation, in sRGB 8-bit whatever the input (CMYK, 16-bit, grey).
 *   2. the palette (`size` colours and their pixel shares) comes from k-means in OKLab over a
 *      5-bit-per-channel colour histogram; docs/palette.md has the numbers that chose it over MMCQ.
 *   3. the named swatches (vibrant, muted, …) come from node-vibrant: its MMCQ quantizer and default
 *      generator, fed the same pixels through a small image class instead of its pure-JS decoder.
 *
 * This file is loaded two ways: compiled to CommonJS in dist/, and from source by Node's built-in
 * type stripping when the pool runs under Jest. Hence: erasable TypeScript only, and no relative
 * runtime imports (a specifier cannot name both `.js` and `.ts`); `import type` is erased.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { getPriority, setPriority } from 'node:os';
import { workerData } from 'node:worker_threads';
import sharp from 'sharp';
import { Vibrant } from 'node-vibrant/node';
import type {
  DecodeLimits,
  PaletteColor,
  PaletteTask,
  PaletteTaskResult,
  PaletteWorkerData,
  PaletteWorkerSettings,
  Swatch,
  Swatches,
  SwatchName,
} from './palette.types';

/** Longest side of the analysed image: 16 k pixels keep quantizing at a few ms and shares within ±1 %. */
export const ANALYSIS_SIDE = 128;
/** Decompression-bomb guard: sharp refuses headers announcing more pixels before decoding any. */
export const MAX_INPUT_PIXELS = 100_000_000;
/** Limits when a caller gives none (DEFAULT_MAX_DECODED_MB in palette.types.ts, which this file may not import at run time). */
export const DEFAULT_DECODE_LIMITS: DecodeLimits = { maxDecodedBytes: 320 * 1024 * 1024, timeoutSeconds: 0 };
/** Pixels with less alpha than this are transparent: they take no share of the palette. */
export const OPAQUE_ALPHA = 128;
/** Bytes read from a file to recognise its format (an AVIF `ftyp` box is well under this). */
const HEADER_BYTES = 256;

// libvips threads would compete with the other workers (and the event loop) for the same cores:
// the pool is the parallelism (PALETTE_LIBVIPS_THREADS, default 1; none given outside the pool, as
// when a bench or test imports this file). The operation cache only helps repeated work on the
// same input, never the case here.
const data = workerData as PaletteWorkerData | null;
sharp.concurrency(data?.libvipsThreads ?? 1);
sharp.cache(false);

/** Threads already given `helperNice` (Linux thread ids), so each scan only reads new ones. */
const niced = new Set<string>();
const HELPER_THREAD = /^(libuv-worker|libvips)/;
/** How many scans a thread not named as a helper gets before it is taken as none. */
const NAME_LOOKS = 3;
const unnamedLooks = new Map<string, number>();

/**
 * Gives the process's libuv pool and libvips threads the nice value `nice` (Linux: setpriority on a
 * thread id affects that thread only). sharp runs its pipelines on libuv's pool, and libvips starts
 * its own threads from there: neither is a Piscina thread. Run at start and after each task, since
 * libvips starts threads on demand; a thread that cannot be read or reniced is left as it is.
 */
export function niceHelperThreads(nice: number): void {
  let tids: string[];
  try {
    tids = readdirSync('/proc/self/task');
  } catch {
    return; // not Linux
  }
  for (const tid of tids) {
    if (niced.has(tid)) continue;
    try {
      const name = readFileSync(`/proc/self/task/${tid}/comm`, 'utf8').trim();
      // A thread not (yet) named as a helper is looked at again the next few times: a new thread
      // carries its creator's name for a moment before libuv or libvips names it.
      if (!HELPER_THREAD.test(name)) {
        const looks = (unnamedLooks.get(tid) ?? 0) + 1;
        unnamedLooks.set(tid, looks);
        if (looks >= NAME_LOOKS) niced.add(tid);
        continue;
      }
      setPriority(Number(tid), nice);
      niced.add(tid);
    } catch {
      niced.add(tid); // gone, or not ours to change
    }
  }
}

if (data?.helperNice !== undefined) niceHelperThreads(data.helperNice);

/**
 * What this thread runs with, read back from the thread itself: its nice value (on Linux
 * getpriority(0) is the calling thread's) and libvips' threads. Piscina runs it by name.
 */
export function settings(): PaletteWorkerSettings {
  return { nice: getPriority(), libvipsThreads: sharp.concurrency() };
}

export interface AnalysisPixels {
  /** RGBA, 8 bits per channel, row-major. */
  data: Uint8Array;
  width: number;
  height: number;
}

export interface DecodedImage {
  pixels: AnalysisPixels;
  width: number;
  height: number;
  format: string;
}

type InputErrorCode = 'UNSUPPORTED_IMAGE' | 'IMAGE_TOO_LARGE' | 'PALETTE_TIMEOUT';

/**
 * Why this image has no palette, as opposed to a bug: reported to the caller with its code and a
 * message fit for a client. `detail` (libvips' own words, which name its internals) is for logs.
 */
export class ImageInputError extends Error {
  readonly code: InputErrorCode;
  readonly detail: string | undefined;
  constructor(code: InputErrorCode, message: string, detail?: string) {
    super(message);
    this.name = 'ImageInputError';
    this.code = code;
    this.detail = detail;
  }
}

/** The one answer for every image that cannot be read, whatever the decoder said. */
export const UNSUPPORTED_IMAGE_MESSAGE = 'The file is not a PNG, JPEG, WebP, AVIF, GIF or TIFF image that can be read (unknown format, or truncated or corrupt data)';

const unsupported = (detail: string) => new ImageInputError('UNSUPPORTED_IMAGE', UNSUPPORTED_IMAGE_MESSAGE, detail);

// ---------------------------------------------------------------------------------------------
// Decoding
// ---------------------------------------------------------------------------------------------

export type SniffedFormat = 'png' | 'jpeg' | 'gif' | 'webp' | 'tiff' | 'avif';

/** sharp's `metadata().format` for each accepted format: the decoder libvips picked must be this one. */
const DECODER_FORMAT: Record<SniffedFormat, string> = { png: 'png', jpeg: 'jpeg', gif: 'gif', webp: 'webp', tiff: 'tiff', avif: 'heif' };

const BYTES_PER_SAMPLE: Record<string, number> = { uchar: 1, char: 1, ushort: 2, short: 2, uint: 4, int: 4, float: 4, complex: 8, double: 8, dpcomplex: 16 };

const ascii = (b: Uint8Array, from: number, to: number): string => String.fromCharCode(...b.subarray(from, to));
const uint32 = (b: Uint8Array, o: number): number => ((b[o] << 24) | (b[o + 1] << 16) | (b[o + 2] << 8) | b[o + 3]) >>> 0;

/**
 * The container format from magic bytes, or null. Checked before sharp sees the bytes so that
 * formats outside the contract (SVG, PDF, HEIC, raw text…) never reach a decoder. Whole signatures,
 * and for AVIF a plausible `ftyp` box (16 + 4n bytes, at most 256, all of it present): bytes 4–7
 * `ftyp` alone also start `<!--ftypavif-->` (an SVG) or a gzip header whose mtime spells `ftyp`.
 */
export function sniffFormat(b: Uint8Array): SniffedFormat | null {
  if (b.length >= 8 && b[0] === 0x89 && ascii(b, 1, 8) === 'PNG\r\n\x1a\n') return 'png';
  if (b.length >= 3 && b[0] === 0xff && b[1] === 0xd8 && b[2] === 0xff) return 'jpeg';
  if (b.length >= 6 && (ascii(b, 0, 6) === 'GIF87a' || ascii(b, 0, 6) === 'GIF89a')) return 'gif';
  if (b.length >= 12 && ascii(b, 0, 4) === 'RIFF' && ascii(b, 8, 12) === 'WEBP') return 'webp';
  if (b.length >= 8 && (ascii(b, 0, 4) === 'II*\0' || ascii(b, 0, 4) === 'MM\0*')) return 'tiff';
  if (b.length >= 16 && ascii(b, 4, 8) === 'ftyp') {
    // ISO-BMFF: box size, 'ftyp', major brand at 8, minor version at 12, compatible brands to the box end.
    const boxSize = uint32(b, 0);
    if (boxSize < 16 || boxSize > HEADER_BYTES || boxSize % 4 !== 0 || boxSize > b.length) return null;
    for (let o = 8; o + 4 <= boxSize; o += o === 8 ? 8 : 4) {
      const brand = ascii(b, o, o + 4);
      if (brand === 'avif' || brand === 'avis') return 'avif';
    }
  }
  return null;
}

/** The first HEADER_BYTES of a file (fewer if it is shorter). */
async function readHeader(path: string): Promise<Uint8Array> {
  const file = await open(path, 'r');
  try {
    const header = new Uint8Array(HEADER_BYTES);
    const { bytesRead } = await file.read(header, 0, HEADER_BYTES, 0);
    return header.subarray(0, bytesRead);
  } finally {
    await file.close();
  }
}

/** What a sharp/libvips failure means for the caller; libvips' words go to `detail` only. */
export function classifyDecodeError(error: unknown): ImageInputError {
  const message = error instanceof Error ? error.message : String(error);
  if (/pixel limit/i.test(message)) {
    return new ImageInputError('IMAGE_TOO_LARGE', `The image has more than ${MAX_INPUT_PIXELS} pixels`, message);
  }
  // sharp's timeout(): vips_error("timeout", "%d%% complete").
  if (/timeout: \d+% complete/.test(message)) {
    return new ImageInputError('PALETTE_TIMEOUT', 'The palette took longer than its time limit', message);
  }
  return unsupported(message);
}

/**
 * libvips picks its decoder from the content, not from our sniffing: bytes that pass for AVIF here
 * may be SVG to it. Only the decoder of the format we accepted may read them (and for HEIF, only AV1).
 */
export function assertDecoder(sniffed: SniffedFormat, meta: Pick<sharp.Metadata, 'format' | 'compression'>): void {
  if (meta.format !== DECODER_FORMAT[sniffed]) throw unsupported(`sniffed ${sniffed}, but libvips chose its ${meta.format} loader`);
  if (sniffed === 'avif' && meta.compression !== 'av1') throw unsupported(`HEIF with ${meta.compression ?? 'unknown'} compression`);
}

const megabytes = (bytes: number): string => `${Math.ceil(bytes / 1048576)} MB`;

/**
 * Refuses, from the header alone, an image whose decoder would be handed more bytes than the limit:
 * a 16-bit or a huge-canvas image costs far more memory and time than its pixel count says. GIF
 * frames are decoded onto a full RGBA canvas whatever the bands libvips reports.
 */
function checkDecodedSize(meta: sharp.Metadata, format: SniffedFormat, maxDecodedBytes: number): void {
  const width = meta.width ?? 0;
  const height = meta.height ?? 0;
  const channels = format === 'gif' ? Math.max(4, meta.channels ?? 4) : (meta.channels ?? 4);
  const sampleBytes = BYTES_PER_SAMPLE[meta.depth ?? ''] ?? 8;
  const bytes = width * height * channels * sampleBytes;
  if (bytes > maxDecodedBytes) {
    throw new ImageInputError(
      'IMAGE_TOO_LARGE',
      `The image is too large to analyse: ${width} × ${height} pixels × ${channels} channels × ${sampleBytes * 8} bits ` +
        `is ${megabytes(bytes)} decoded, over the limit of ${megabytes(maxDecodedBytes)}`,
    );
  }
}

/**
 * Decodes `input` (bytes, or the path of a file) and shrinks it to at most ANALYSIS_SIDE² sRGB RGBA
 * pixels. Animated images give their first frame. Throws ImageInputError for anything that is not a
 * whole, supported image within `limits`, or that libvips gave up on after `limits.timeoutSeconds`.
 */
export async function decodeForPalette(input: Uint8Array | string, limits: DecodeLimits = DEFAULT_DECODE_LIMITS): Promise<DecodedImage> {
  let header: Uint8Array;
  try {
    header = typeof input === 'string' ? await readHeader(input) : input;
  } catch (error) {
    throw unsupported(`cannot read the file: ${(error as Error).message}`);
  }
  const sniffed = sniffFormat(header);
  if (sniffed === null) throw unsupported('no PNG, JPEG, WebP, AVIF, GIF or TIFF signature');
  // failOn 'error' rejects corrupt and truncated data but tolerates warnings (odd markers, extra
  // bytes) that real-world JPEGs often carry.
  const image = sharp(input, { limitInputPixels: MAX_INPUT_PIXELS, failOn: 'error', autoOrient: true });
  if (limits.timeoutSeconds > 0) image.timeout({ seconds: limits.timeoutSeconds });
  let width: number;
  let height: number;
  try {
    const meta = await image.metadata();
    assertDecoder(sniffed, meta);
    checkDecodedSize(meta, sniffed, limits.maxDecodedBytes);
    ({ width, height } = meta.autoOrient);
  } catch (error) {
    throw error instanceof ImageInputError ? error : classifyDecodeError(error);
  }
  try {
    const { data, info } = await image
      .resize(ANALYSIS_SIDE, ANALYSIS_SIDE, { fit: 'inside', withoutEnlargement: true })
      .toColourspace('srgb')
      .ensureAlpha()
      .raw({ depth: 'uchar' })
      .toBuffer({ resolveWithObject: true });
    if (info.channels !== 4) throw new Error(`expected 4 channels after ensureAlpha, got ${info.channels}`);
    return { pixels: { data, width: info.width, height: info.height }, width, height, format: sniffed };
  } catch (error) {
    throw classifyDecodeError(error);
  }
}

// ---------------------------------------------------------------------------------------------
// Colour helpers
// ---------------------------------------------------------------------------------------------

const SRGB_TO_LINEAR = (() => {
  const lut = new Float64Array(257);
  for (let i = 0; i < 256; i++) {
    const c = i / 255;
    lut[i] = c <= 0.04045 ? c / 12.92 : Math.pow((c + 0.055) / 1.055, 2.4);
  }
  lut[256] = lut[255];
  return lut;
})();

function linear(c: number): number {
  const i = Math.floor(c);
  return SRGB_TO_LINEAR[i] + (SRGB_TO_LINEAR[i + 1] - SRGB_TO_LINEAR[i]) * (c - i);
}

/** sRGB (0..255, fractional allowed) → OKLab, written to `out[o..o+2]`. */
export function rgbToOklab(r: number, g: number, b: number, out: Float64Array, o = 0): void {
  const lr = linear(r);
  const lg = linear(g);
  const lb = linear(b);
  const l = Math.cbrt(0.4122214708 * lr + 0.5363325363 * lg + 0.0514459929 * lb);
  const m = Math.cbrt(0.2119034982 * lr + 0.6806995451 * lg + 0.1073969566 * lb);
  const s = Math.cbrt(0.0883024619 * lr + 0.2817188376 * lg + 0.6299787005 * lb);
  out[o] = 0.2104542553 * l + 0.793617785 * m - 0.0040720468 * s;
  out[o + 1] = 1.9779984951 * l - 2.428592205 * m + 0.4505937099 * s;
  out[o + 2] = 0.0259040371 * l + 0.7827717662 * m - 0.808675766 * s;
}

export function toHex(rgb: readonly [number, number, number]): string {
  return `#${rgb.map((c) => c.toString(16).padStart(2, '0')).join('')}`;
}

const round4 = (x: number): number => Math.round(x * 10_000) / 10_000;

// ---------------------------------------------------------------------------------------------
// Histogram: 5 bits per channel, but with the exact sum of the pixels in each bin, so cluster
// colours are true pixel means (no bin-centre error) while quantizing works on a few thousand
// weighted points instead of every pixel.
// ---------------------------------------------------------------------------------------------

const SIG_BITS = 5;
const SHIFT = 8 - SIG_BITS;

export interface ColorHistogram {
  /** Occupied bins. */
  n: number;
  /** Opaque pixels counted. */
  total: number;
  count: Float64Array;
  sum: Float64Array; // n × (r, g, b)
  lab: Float64Array; // n × (L, a, b) of each bin's mean colour
}

export function buildHistogram(pixels: AnalysisPixels): ColorHistogram {
  const bins = 1 << (3 * SIG_BITS);
  const slot = new Int32Array(bins).fill(-1);
  const px = pixels.data;
  const capacity = Math.min(bins, px.length >> 2);
  const count = new Float64Array(capacity);
  const sum = new Float64Array(capacity * 3);
  let n = 0;
  let total = 0;
  for (let o = 0; o < px.length; o += 4) {
    if (px[o + 3] < OPAQUE_ALPHA) continue;
    const r = px[o];
    const g = px[o + 1];
    const b = px[o + 2];
    const key = ((r >> SHIFT) << (2 * SIG_BITS)) | ((g >> SHIFT) << SIG_BITS) | (b >> SHIFT);
    let i = slot[key];
    if (i < 0) i = slot[key] = n++;
    count[i] += 1;
    sum[3 * i] += r;
    sum[3 * i + 1] += g;
    sum[3 * i + 2] += b;
    total++;
  }
  const lab = new Float64Array(n * 3);
  for (let i = 0; i < n; i++) {
    const c = count[i];
    rgbToOklab(sum[3 * i] / c, sum[3 * i + 1] / c, sum[3 * i + 2] / c, lab, 3 * i);
  }
  return { n, total, count, sum, lab };
}

function meanColor(sum: ArrayLike<number>, o: number, count: number): [number, number, number] {
  return [Math.round(sum[o] / count), Math.round(sum[o + 1] / count), Math.round(sum[o + 2] / count)];
}

/** Colour groups → palette entries, most frequent first, each with its share of `total` pixels. */
export function toPalette(groups: { count: number; rgb: [number, number, number] }[], total: number): PaletteColor[] {
  return groups
    .filter((g) => g.count > 0)
    .sort((a, b) => b.count - a.count)
    .map((g) => ({ hex: toHex(g.rgb), rgb: g.rgb, proportion: round4(g.count / total) }));
}

// ---------------------------------------------------------------------------------------------
// The quantizer: weighted k-means in OKLab (test/bench/mmcq.ts has the MMCQ it was compared with).
// ---------------------------------------------------------------------------------------------

const MAX_ITERATIONS = 40;

/**
 * `size` colours by k-means over the histogram bins in OKLab (perceptually uniform, so "nearest"
 * means "looks closest"). Deterministic: seeded greedily with the heaviest bin, then the bin with
 * the largest weight × squared distance to the chosen seeds (k-means++ without the dice).
 */
export function quantizeKmeans(pixels: AnalysisPixels, size: number): PaletteColor[] {
  const h = buildHistogram(pixels);
  if (h.n === 0) return [];
  const { n, count, lab } = h;
  const k = Math.min(size, n);
  const centers = new Float64Array(k * 3);
  const nearest = new Float64Array(n).fill(Infinity);

  let seed = 0;
  for (let i = 1; i < n; i++) if (count[i] > count[seed]) seed = i;
  let chosen = 0;
  for (;;) {
    centers.set(lab.subarray(3 * seed, 3 * seed + 3), 3 * chosen);
    chosen++;
    if (chosen === k) break;
    let best = -1;
    let bestScore = 0;
    for (let i = 0; i < n; i++) {
      const d = dist2(lab, 3 * i, centers, 3 * (chosen - 1));
      if (d < nearest[i]) nearest[i] = d;
      const score = count[i] * nearest[i];
      if (score > bestScore) {
        bestScore = score;
        best = i;
      }
    }
    if (best < 0) break; // every bin coincides with a seed: fewer distinct colours than `size`
    seed = best;
  }

  const assign = new Int32Array(n).fill(-1);
  const acc = new Float64Array(chosen * 4);
  for (let iteration = 0; iteration < MAX_ITERATIONS; iteration++) {
    let changed = 0;
    for (let i = 0; i < n; i++) {
      let bestC = 0;
      let bestD = Infinity;
      for (let c = 0; c < chosen; c++) {
        const d = dist2(lab, 3 * i, centers, 3 * c);
        if (d < bestD) {
          bestD = d;
          bestC = c;
        }
      }
      if (assign[i] !== bestC) {
        assign[i] = bestC;
        changed++;
      }
    }
    if (changed === 0) break;
    acc.fill(0);
    for (let i = 0; i < n; i++) {
      const c = assign[i];
      const w = count[i];
      acc[4 * c] += w;
      acc[4 * c + 1] += w * lab[3 * i];
      acc[4 * c + 2] += w * lab[3 * i + 1];
      acc[4 * c + 3] += w * lab[3 * i + 2];
    }
    for (let c = 0; c < chosen; c++) {
      const w = acc[4 * c];
      if (w === 0) continue; // an emptied cluster keeps its centre; it is dropped from the output
      centers[3 * c] = acc[4 * c + 1] / w;
      centers[3 * c + 1] = acc[4 * c + 2] / w;
      centers[3 * c + 2] = acc[4 * c + 3] / w;
    }
  }

  // Report each cluster's mean in sRGB: the average colour of its pixels, as a viewer would see it.
  const groups = Array.from({ length: chosen }, () => ({ count: 0, r: 0, g: 0, b: 0 }));
  for (let i = 0; i < n; i++) {
    const g = groups[assign[i]];
    g.count += count[i];
    g.r += h.sum[3 * i];
    g.g += h.sum[3 * i + 1];
    g.b += h.sum[3 * i + 2];
  }
  return toPalette(
    groups.map((g) => ({ count: g.count, rgb: g.count ? meanColor([g.r, g.g, g.b], 0, g.count) : [0, 0, 0] })),
    h.total,
  );
}

function dist2(a: Float64Array, i: number, b: Float64Array, j: number): number {
  const dl = a[i] - b[j];
  const da = a[i + 1] - b[j + 1];
  const db = a[i + 2] - b[j + 2];
  return dl * dl + da * da + db * db;
}

// ---------------------------------------------------------------------------------------------
// node-vibrant: MMCQ quantizer and the named swatches, on our pixels.
// ---------------------------------------------------------------------------------------------

type VibrantBuilder = ReturnType<typeof Vibrant.from>;
export type VibrantImageClass = Parameters<VibrantBuilder['useImageClass']>[0];

/**
 * An image class for node-vibrant that serves already-decoded pixels (its own Node image class
 * decodes with jimp, in pure JS, several times slower than sharp).
 */
export function pixelsImageClass(pixels: AnalysisPixels): VibrantImageClass {
  return class PixelsImage {
    load() {
      return Promise.resolve(this);
    }
    clear() {}
    update() {}
    remove() {}
    getWidth() {
      return pixels.width;
    }
    getHeight() {
      return pixels.height;
    }
    getPixelCount() {
      return pixels.width * pixels.height;
    }
    // sharp already downscaled; vibrant's own scaling is skipped.
    resize() {}
    scaleDown() {}
    getImageData() {
      // A copy: vibrant's filters clear the alpha of filtered pixels in place.
      return { data: new Uint8ClampedArray(pixels.data), width: pixels.width, height: pixels.height };
    }
  };
}

/** Vibrant reads its image class from the source; ours ignores it and serves the pixels above. */
export const UNUSED_SOURCE = '';

const VIBRANT_NAMES: Record<string, SwatchName> = {
  Vibrant: 'vibrant',
  Muted: 'muted',
  DarkVibrant: 'darkVibrant',
  DarkMuted: 'darkMuted',
  LightVibrant: 'lightVibrant',
  LightMuted: 'lightMuted',
};

/**
 * node-vibrant's named swatches with its defaults (64-colour MMCQ, near-white and translucent
 * pixels filtered). Swatches vibrant invents when the image has no such colour (population 0)
 * are left out: absent means "this image has none".
 */
export async function vibrantSwatches(pixels: AnalysisPixels): Promise<Swatches> {
  if (pixels.width * pixels.height === 0) return {};
  const palette = await Vibrant.from(UNUSED_SOURCE).useImageClass(pixelsImageClass(pixels)).quality(1).maxColorCount(64).getPalette();
  const swatches: Swatches = {};
  for (const [name, swatch] of Object.entries(palette)) {
    const key = VIBRANT_NAMES[name];
    if (!key || !swatch || swatch.population <= 0) continue;
    const rgb = swatch.rgb.map((c) => Math.round(c)) as Swatch['rgb'];
    swatches[key] = { hex: toHex(rgb), rgb, population: swatch.population };
  }
  return swatches;
}

// ---------------------------------------------------------------------------------------------
// The pool task
// ---------------------------------------------------------------------------------------------

/** Decodes the transferred image (or the file it names) and answers its palette, or why it has none. */
export default async function paletteTask(task: PaletteTask): Promise<PaletteTaskResult> {
  try {
    const input = typeof task.image === 'string' ? task.image : new Uint8Array(task.image);
    const decoded = await decodeForPalette(input, task.limits ?? DEFAULT_DECODE_LIMITS);
    const colors = quantizeKmeans(decoded.pixels, task.size);
    const swatches = await vibrantSwatches(decoded.pixels);
    if (data?.helperNice !== undefined) niceHelperThreads(data.helperNice);
    return {
      ok: true,
      palette: { colors, width: decoded.width, height: decoded.height, format: decoded.format, swatches },
    };
  } catch (error) {
    if (error instanceof ImageInputError) return { ok: false, code: error.code, message: error.message, detail: error.detail };
    return { ok: false, code: 'PALETTE_ERROR', message: `Palette extraction failed: ${(error as Error)?.message ?? String(error)}` };
  }
}
