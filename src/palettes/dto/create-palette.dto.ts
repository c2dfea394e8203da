import { ApiPropertyOptional } from '@nestjs/swagger';
import { Transform } from 'class-transformer';
import { IsInt, IsOptional, Max, Min } from 'class-validator';
import { toInteger } from '../../common/to-integer';
import { MAX_PALETTE_SIZE, MIN_PALETTE_SIZE } from '../../palette/palette.types';

export const DEFAULT_PALETTE_SIZE = 5;

/** The text fields of `POST /api/v1/palettes` (the file itself is the `image` part). */
export class CreatePaletteDto {
  @ApiPropertyOptional({ type: 'integer', minimum: MIN_PALETTE_SIZE, maximum: MAX_PALETTE_SIZE, default: DEFAULT_PALETTE_SIZE, description: 'Colours in the palette' })
  @IsOptional()
  @Transform(toInteger)
  @IsInt({ message: `size must be an integer from ${MIN_PALETTE_SIZE} to ${MAX_PALETTE_SIZE}` })
  @Min(MIN_PALETTE_SIZE)
  @Max(MAX_PALETTE_SIZE)
  size?: number;
}
