import { ApiProperty } from '@nestjs/swagger';

/** One palette colour; shared by generations and the palettes endpoint (one schema in the OpenAPI document). */
export class PaletteColorDto {
  @ApiProperty({ example: '#d43434' }) hex: string;
  @ApiProperty({ type: [Number], example: [212, 52, 52], minItems: 3, maxItems: 3 }) rgb: [number, number, number];
  @ApiProperty({ example: 0.42, description: "Share of the image's pixels" }) proportion: number;
}
