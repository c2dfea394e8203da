import { HttpStatus, Logger } from '@nestjs/common';
import { AppError } from '../common/app-error';
import { PaletteError } from '../palette/palette.errors';
import type { PaletteService } from '../palette/palette.service';

/**
 * The HTTP answer to the palette engine's refusal of an uploaded image, the same on every upload
 * route (palettes, references): 415 unreadable, 413 too large, 503 + Retry-After when the pool is
 * busy or slow, 500 (logged, fixed text) when a worker failed. Anything else is returned unchanged.
 */
export function paletteAppError(error: unknown, palette: Pick<PaletteService, 'retryAfterSeconds'>, logger: Logger): unknown {
  if (!(error instanceof PaletteError)) return error;
  switch (error.code) {
    case 'UNSUPPORTED_IMAGE':
      return new AppError(HttpStatus.UNSUPPORTED_MEDIA_TYPE, error.code, error.message);
    case 'IMAGE_TOO_LARGE':
      return new AppError(HttpStatus.PAYLOAD_TOO_LARGE, error.code, error.message);
    case 'PALETTE_BUSY':
    case 'PALETTE_TIMEOUT':
      return new AppError(HttpStatus.SERVICE_UNAVAILABLE, error.code, error.message, {
        'Retry-After': String(palette.retryAfterSeconds()),
      });
    case 'PALETTE_ERROR':
      logger.error(error.message);
      return new AppError(HttpStatus.INTERNAL_SERVER_ERROR, error.code, 'The palette could not be extracted');
  }
}
