import type { PaletteErrorCode } from './palette.types';

export type { PaletteErrorCode };

/**
 * Why a palette could not be made. `UNSUPPORTED_IMAGE` and `IMAGE_TOO_LARGE` are the caller's
 * input; `PALETTE_BUSY` is back-pressure (retry later); `PALETTE_ERROR` is everything else,
 * including a worker thread that died mid-task.
 */
export class PaletteError extends Error {
  constructor(
    readonly code: PaletteErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'PaletteError';
  }
}
