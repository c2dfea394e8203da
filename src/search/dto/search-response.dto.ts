import { ApiExtraModels, ApiProperty, type ApiPropertyOptions, getSchemaPath } from '@nestjs/swagger';
import { GenerationDto } from '../../generations/dto/generation.dto';
import { ReferenceDto } from '../../references/dto/reference.dto';
import { ITEM_KINDS, ItemKind } from '../color-space';
import type { SearchHit } from '../search.service';

export interface SearchTextDto {
  rank: number;
}

export interface SearchColorDto {
  distance: number;
  imageIndex: number;
}

/*
 * `text` and `color` are `null` or an object: inline, because OpenAPI 3.0 cannot make a `$ref`
 * nullable (`nullable` beside `allOf: [$ref]` still rejects null).
 */
const SEARCH_TEXT_SCHEMA: ApiPropertyOptions = {
  type: 'object',
  nullable: true,
  selfRequired: true,
  description: 'null when the item does not match the text, or no `q` was given',
  required: ['rank'],
  additionalProperties: false,
  properties: {
    rank: { type: 'integer', minimum: 1, description: 'Rank among the results that match the text (1 = best)' },
  },
};

const SEARCH_COLOR_SCHEMA: ApiPropertyOptions = {
  type: 'object',
  nullable: true,
  selfRequired: true,
  description: 'null without a colour criterion, or when the item has no palette (yet)',
  required: ['distance', 'imageIndex'],
  additionalProperties: false,
  properties: {
    distance: {
      type: 'number',
      minimum: 0,
      maximum: 40,
      description:
        'Earth Mover’s Distance between the query colours and the palette, in ΔE_OK units (OKLab × 100; ground distance capped at 40); lower is closer',
      example: 4.2,
    },
    imageIndex: { type: 'integer', minimum: 0, description: 'The image whose palette matched best (a generation’s image index; 0 for a reference)' },
  },
};

@ApiExtraModels(GenerationDto, ReferenceDto)
export class SearchItemDto {
  @ApiProperty({ enum: ITEM_KINDS }) kind: ItemKind;
  @ApiProperty() id: string;
  @ApiProperty({
    type: 'number',
    description: 'Criteria matched (text; colour within distance 20) + reciprocal rank fusion Σ 1/(60 + rank); higher is better, results are in this order',
  })
  score: number;
  @ApiProperty(SEARCH_TEXT_SCHEMA) text: SearchTextDto | null;
  @ApiProperty(SEARCH_COLOR_SCHEMA) color: SearchColorDto | null;
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
