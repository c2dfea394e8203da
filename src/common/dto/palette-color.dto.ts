import { ApiProperty } from '@nestjs/swagger';

/** `#rrggbb`, lower case. */
export const HEX_COLOR = { type: 'string', pattern: '^#[0-9a-f]{6}$', example: '#d43434' } as const;
/** Red, green and blue, 0..255 each. */
export const RGB = { type: 'array', items: { type: 'integer', minimum: 0, maximum: 255 }, minItems: 3, maxItems: 3, example: [212, 52, 52] } as const;

/** One palette colour; shared by generations and the palettes endpoint (one schema in the OpenAPI document). */
export class PaletteColorDto {
  @ApiProperty(HEX_COLOR) hex: string;
  @ApiProperty(RGB) rgb: [number, number, number];
  @ApiProperty({ type: 'number', minimum: 0, maximum: 1, example: 0.42, description: "Share of the image's (opaque) pixels; a palette's shares sum to 1" })
  proportion: number;
}
