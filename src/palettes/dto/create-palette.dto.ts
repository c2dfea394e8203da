import { ApiPropertyOptional } from '@nestjs/swagger';
import { Transform } from 'class-transformer';
import { IsInt, IsOptional, Max, Min } from 'class-validator';
import { MAX_PALETTE_SIZE, MIN_PALETTE_SIZE } from '../../palette/palette.types';

export const DEFAULT_PALETTE_SIZE = 5;

/**
 * Multipart text fields arrive as strings; only a plain decimal integer becomes a number, anything
 * else stays a string and fails @IsInt (so "5.0", "5abc" or "" are rejected, not coerced).
 */
const toInteger = ({ value }: { value: unknown }) => (typeof value === 'string' && /^\s*-?\d{1,6}\s*$/.test(value) ? Number(value) : value);

/** The text fields of `POST /api/v1/palettes` (the file itself is the `image` part). */
export class CreatePaletteDto {
  @ApiPropertyOptional({ minimum: MIN_PALETTE_SIZE, maximum: MAX_PALETTE_SIZE, default: DEFAULT_PALETTE_SIZE, description: 'Colours in the palette' })
  @IsOptional()
  @Transform(toInteger)
  @IsInt()
  @Min(MIN_PALETTE_SIZE)
  @Max(MAX_PALETTE_SIZE)
  size?: number;
}
