/**
 * Types and limits shared by the palette worker (a plain module run in worker threads), the
 * service and the HTTP layer. The worker imports only types from here, with `import type`, which
 * Node's type stripping erases: no runtime module resolution happens for this file in a worker.
 */
import type { PaletteColor } from '../common/generation.model';

export type { PaletteColor };

/** Colours a palette may have. */
export const MIN_PALETTE_SIZE = 1;
export const MAX_PALETTE_SIZE = 12;

export const SWATCH_NAMES = ['vibrant', 'muted', 'darkVibrant', 'darkMuted', 'lightVibrant', 'lightMuted'] as const;
export type SwatchName = (typeof SWATCH_NAMES)[number];

export interface Swatch {
  hex: string;
  rgb: [number, number, number];
  /** Pixels of the analysed (downscaled) image in this swatch's colour box. */
  population: number;
}

export type Swatches = Partial<Record<SwatchName, Swatch>>;

export interface PaletteResult {
  /** `size` colours (fewer only when the image has fewer distinct colours), most frequent first. */
  colors: PaletteColor[];
  /** Displayed size (EXIF orientation applied) of the original image. */
  width: number;
  height: number;
  /** Decoder that read the image: png, jpeg, webp, avif, gif, tiff. */
  format: string;
  swatches: Swatches;
}

export type PaletteErrorCode = 'UNSUPPORTED_IMAGE' | 'IMAGE_TOO_LARGE' | 'PALETTE_BUSY' | 'PALETTE_TIMEOUT' | 'PALETTE_ERROR';

/** Default of PALETTE_MAX_DECODED_MB (MB = 2^20 bytes): a 100 M-pixel 8-bit RGB image fits, a 10000² RGBA one does not. */
export const DEFAULT_MAX_DECODED_MB = 320;

/** What bounds the work a worker does for one image. */
export interface DecodeLimits {
  /** width × height × channels × bytes per sample, read from the header before any pixel is decoded. */
  maxDecodedBytes: number;
  /** libvips abandons its own work after this many seconds (0: no limit). The pool's timer is the outer bound. */
  timeoutSeconds: number;
}

/**
 * What the pool sends to a worker: the encoded image as bytes (transferred, not copied) or as the
 * path of a file holding them (an upload streamed to disk: the worker reads it, nothing is copied).
 */
/** Piscina's `workerData` for every palette worker thread. */
export interface PaletteWorkerData {
  /** sharp.concurrency() in the worker: libvips threads per operation; 0 = libvips' default. */
  libvipsThreads: number;
  /**
   * When set, the nice value the worker also gives the process's libuv pool and libvips threads
   * (where sharp decodes), which Piscina's `niceIncrement` does not reach (PALETTE_NICE_THREADS=all).
   */
  helperNice?: number;
}

/** What a worker thread runs with, as it reads it back itself (the `settings` export of the worker). */
export interface PaletteWorkerSettings {
  /** The thread's own nice value (Linux: per thread; the event loop's plus PALETTE_WORKER_NICE). */
  nice: number;
  /** sharp.concurrency() as libvips reports it (0 was resolved to the core count). */
  libvipsThreads: number;
}

export interface PaletteTask {
  image: ArrayBuffer | string;
  size: number;
  /** Absent: the worker's defaults (the configured ones are always sent by PaletteService). */
  limits?: DecodeLimits;
}

/**
 * What a worker answers. Failures the caller should see (bad input) come back as values: errors
 * thrown across a thread boundary lose their custom fields such as `code`. `message` is fit for the
 * client; `detail` (the decoder's own words) is for the server's log only.
 */
export type PaletteTaskResult =
  | { ok: true; palette: PaletteResult }
  | { ok: false; code: Exclude<PaletteErrorCode, 'PALETTE_BUSY'>; message: string; detail?: string };
