import { ApiExtraModels, ApiProperty, getSchemaPath } from '@nestjs/swagger';
import { GenerationDto } from '../../generations/dto/generation.dto';
import { ReferenceDto } from '../../references/dto/reference.dto';
import { ITEM_KINDS, ItemKind } from '../color-space';
import type { SearchHit } from '../search.service';

export class SearchTextDto {
  @ApiProperty({ type: 'integer', minimum: 1, description: 'Rank among the results that match the text (1 = best)' }) rank: number;
}

export class SearchColorDto {
  @ApiProperty({
    type: 'number',
    minimum: 0,
    maximum: 40,
    description: 'Earth Mover’s Distance between the query colours and the palette, in ΔE_OK units (OKLab × 100; ground distance capped at 40); lower is closer',
    example: 4.2,
  })
  distance: number;

  @ApiProperty({ type: 'integer', minimum: 0, description: 'The image whose palette matched best (a generation’s image index; 0 for a reference)' })
  imageIndex: number;
}

@ApiExtraModels(GenerationDto, ReferenceDto)
export class SearchItemDto {
  @ApiProperty({ enum: ITEM_KINDS }) kind: ItemKind;
  @ApiProperty() id: string;
  @ApiProperty({
    type: 'number',
    description: 'Criteria matched (text; colour within distance 20) + reciprocal rank fusion Σ 1/(60 + rank); higher is better, results are in this order',
  })
  score: number;
  @ApiProperty({ type: SearchTextDto, nullable: true, description: 'null when the item does not match the text, or no `q` was given' }) text: SearchTextDto | null;
  @ApiProperty({ type: SearchColorDto, nullable: true, description: 'null without a colour criterion, or when the item has no palette (yet)' })
  color: SearchColorDto | null;
  @ApiProperty({
    oneOf: [{ $ref: getSchemaPath(GenerationDto) }, { $ref: getSchemaPath(ReferenceDto) }],
    description: 'The generation or reference (see `kind`), as its own route answers it',
  })
  item: GenerationDto | ReferenceDto;

  static from(hit: SearchHit): SearchItemDto {
    return {
      kind: hit.kind,
      id: hit.id,
      score: Math.round(hit.score * 1e6) / 1e6,
      text: hit.text ? { rank: hit.text.rank } : null,
      color: hit.color ? { distance: Math.round(hit.color.distance * 1000) / 1000, imageIndex: hit.color.imageIndex } : null,
      item: hit.item.kind === 'generation' ? GenerationDto.from(hit.item.value) : ReferenceDto.from(hit.item.value),
    };
  }
}

export class SearchResponseDto {
  @ApiProperty({ type: [SearchItemDto], description: 'Best first' }) items: SearchItemDto[];
}
