import sharp from 'sharp';

/**
 * The only libvips loaders this process may use: PNG, JPEG, WebP, TIFF, HEIF (AVIF) and GIF (nsgif),
 * each from a buffer, a file or a stream. Everything else (SVG, PDF, ImageMagick, FITS, raw formats…)
 * is blocked, whatever the bytes look like: libvips picks a loader by content, and the SVG loader
 * takes any bytes with `<svg` near the start, so a format allowlist that only sniffs magic bytes
 * can be walked around (`<!--ftypavif-->` + an SVG passed for AVIF).
 */
export const ALLOWED_LOADERS = [
  'VipsForeignLoadPng',
  'VipsForeignLoadJpeg',
  'VipsForeignLoadWebp',
  'VipsForeignLoadTiff',
  'VipsForeignLoadHeif',
  'VipsForeignLoadNsgif',
] as const;

let restricted = false;

/**
 * Blocks every libvips loader but ALLOWED_LOADERS, process-wide (libvips' block list is global: the
 * main thread and every worker thread share it). Call it on the main thread before any worker
 * starts: blocking all loaders and then unblocking a few would, while another thread decodes, leave
 * a moment in which that thread finds no loader. Idempotent.
 */
export function restrictDecoders(): void {
  if (restricted) return;
  sharp.block({ operation: ['VipsForeignLoad'] });
  sharp.unblock({ operation: [...ALLOWED_LOADERS] });
  restricted = true;
}
