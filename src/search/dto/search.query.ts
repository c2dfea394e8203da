import { ApiPropertyOptional } from '@nestjs/swagger';
import { Transform, Type } from 'class-transformer';
import { ArrayMaxSize, ArrayMinSize, IsArray, IsIn, IsInt, IsOptional, IsString, Matches, Max, MaxLength, Min, MinLength } from 'class-validator';
import { IsWellFormed } from '../../common/is-well-formed';
import { MAX_QUERY_COLORS } from '../search.service';
import { IsQueryColor, MAX_COLOR_WEIGHT } from '../query-color';
import { MAX_QUERY_LENGTH } from '../text-query';

export const SEARCH_KINDS = ['generation', 'reference', 'all'] as const;
export type SearchKind = (typeof SEARCH_KINDS)[number];

const NO_CONTROL_CHARS = /^[^\u0000-\u001F\u007F-\u009F]*$/;

export class SearchQuery {
  @ApiPropertyOptional({
    minLength: 1,
    maxLength: MAX_QUERY_LENGTH,
    description:
      'Text: a generation’s prompt, a reference’s title and tags. Web-search syntax: all words must match (stemmed, case-blind), ' +
      '`"a phrase"`, `or`, `-excluded`; English stop words are ignored.',
    example: 'red apple',
  })
  @IsOptional()
  @IsString()
  @MinLength(1)
  @MaxLength(MAX_QUERY_LENGTH)
  @Matches(NO_CONTROL_CHARS, { message: 'q must not contain control characters' })
  @IsWellFormed()
  q?: string;

  @ApiPropertyOptional({
    type: [String],
    maxItems: MAX_QUERY_COLORS,
    description:
      `Repeatable, at most ${MAX_QUERY_COLORS}: \`#rrggbb\` or \`#rrggbb:weight\` (weight above 0, at most ${MAX_COLOR_WEIGHT}; relative, default 1). ` +
      'Matched against stored palettes by the Earth Mover’s Distance in OKLab, weighted by each colour’s share. Send `#` as `%23`.',
    example: ['#d43434:70', '#2a4d9b:30'],
  })
  @IsOptional()
  @Transform(({ value }: { value: unknown }) => (typeof value === 'string' ? [value] : value))
  @IsArray()
  @ArrayMinSize(1)
  @ArrayMaxSize(MAX_QUERY_COLORS)
  @IsQueryColor({ each: true })
  color?: string[];

  @ApiPropertyOptional({
    description: 'The nearest palettes to a stored item’s palette: `generation:{id}` or `reference:{id}` (one of the caller’s); not with `color`',
    example: 'reference:0193b0c4-5d6e-7f00-8a1b-2c3d4e5f6a7b',
  })
  @IsOptional()
  @IsString()
  @Matches(/^(generation|reference):\S{1,200}$/, { message: 'similarTo must be generation:{id} or reference:{id}' })
  similarTo?: string;

  @ApiPropertyOptional({ enum: SEARCH_KINDS, default: 'all' })
  @IsOptional()
  @IsIn(SEARCH_KINDS)
  kind?: SearchKind;

  @ApiPropertyOptional({ type: 'integer', minimum: 1, maximum: 100, default: 20 })
  @IsOptional()
  @Type(() => Number)
  @IsInt()
  @Min(1)
  @Max(100)
  limit?: number;
}
