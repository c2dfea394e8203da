import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';
import { HEX_COLOR, PaletteColorDto, RGB } from '../../common/dto/palette-color.dto';

export class PaletteSwatchDto {
  @ApiProperty(HEX_COLOR) hex: string;
  @ApiProperty(RGB) rgb: [number, number, number];
  @ApiProperty({ type: 'integer', minimum: 1, example: 9600, description: 'Pixels of the analysed (downscaled) image in this swatch' }) population: number;
}

/** node-vibrant's named swatches; a name is absent when the image has no such colour. */
export class PaletteSwatchesDto {
  @ApiPropertyOptional({ type: PaletteSwatchDto }) vibrant?: PaletteSwatchDto;
  @ApiPropertyOptional({ type: PaletteSwatchDto }) muted?: PaletteSwatchDto;
  @ApiPropertyOptional({ type: PaletteSwatchDto }) darkVibrant?: PaletteSwatchDto;
  @ApiPropertyOptional({ type: PaletteSwatchDto }) darkMuted?: PaletteSwatchDto;
  @ApiPropertyOptional({ type: PaletteSwatchDto }) lightVibrant?: PaletteSwatchDto;
  @ApiPropertyOptional({ type: PaletteSwatchDto }) lightMuted?: PaletteSwatchDto;
}

export class PaletteResponseDto {
  @ApiProperty({
    type: [PaletteColorDto],
    description: '`size` colours (fewer only if the image has fewer distinct colours), most frequent first; proportions sum to 1',
  })
  colors: PaletteColorDto[];

  @ApiProperty({ type: 'integer', minimum: 1, example: 1024, description: 'Displayed width (EXIF orientation applied)' }) width: number;
  @ApiProperty({ type: 'integer', minimum: 1, example: 768, description: 'Displayed height (EXIF orientation applied)' }) height: number;
  @ApiProperty({ type: PaletteSwatchesDto }) swatches: PaletteSwatchesDto;
}
