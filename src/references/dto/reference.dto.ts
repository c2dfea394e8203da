import { ApiProperty } from '@nestjs/swagger';
import { PaletteColorDto } from '../../common/dto/palette-color.dto';
import type { Reference } from '../../common/reference.model';

export class ReferenceDto {
  @ApiProperty({ example: '0193b0c4-5d6e-7f00-8a1b-2c3d4e5f6a7b' }) id: string;
  @ApiProperty({ type: String, nullable: true, example: 'Autumn palette study' }) title: string | null;
  @ApiProperty({ type: [String], example: ['warm', 'studio'] }) tags: string[];
  @ApiProperty({ type: 'integer', example: 1024, description: 'Displayed width (EXIF orientation applied)' }) width: number;
  @ApiProperty({ type: 'integer', example: 768 }) height: number;
  @ApiProperty({ example: 'image/png', description: 'The format the image was read as (not the type the client declared)' }) mimeType: string;
  @ApiProperty({ type: [PaletteColorDto], description: 'Five colours, most frequent first; proportions sum to 1' }) palette: PaletteColorDto[];
  @ApiProperty({ example: '/api/v1/references/0193…/image' }) url: string;
  @ApiProperty({ format: 'date-time' }) createdAt: string;

  static from(r: Reference): ReferenceDto {
    return {
      id: r.id,
      title: r.title,
      tags: [...r.tags],
      width: r.width,
      height: r.height,
      mimeType: r.mimeType,
      palette: r.palette.map((c) => ({ ...c, rgb: [...c.rgb] as [number, number, number] })),
      url: `/api/v1/references/${r.id}/image`,
      createdAt: r.createdAt.toISOString(),
    };
  }
}

export class ReferenceListDto {
  @ApiProperty({ type: [ReferenceDto] }) items: ReferenceDto[];
  @ApiProperty({ type: String, nullable: true, description: 'Pass as `cursor` for the next page; null on the last page' })
  nextCursor: string | null;
}
