import { Controller, Get, HttpStatus, Query } from '@nestjs/common';
import { ApiOkResponse, ApiOperation, ApiSecurity, ApiTags } from '@nestjs/swagger';
import { CurrentPrincipal } from '../auth/principal';
import { AppError } from '../common/app-error';
import { ApiErrors, DATABASE_ERRORS, PROTECTED_ROUTE_ERRORS } from '../common/api-errors';
import { isGenerationId } from '../common/ids';
import type { Principal } from '../common/principal';
import { ITEM_KINDS, ItemKind } from './color-space';
import { SearchItemDto, SearchResponseDto } from './dto/search-response.dto';
import { SearchQuery } from './dto/search.query';
import { parseQueryColor } from './query-color';
import { SearchService } from './search.service';

@ApiTags('search')
@ApiSecurity('api-key')
@Controller('api/v1/search')
export class SearchController {
  constructor(private readonly search: SearchService) {}

  @Get()
  @ApiOperation({
    summary: 'Hybrid search over your generations and references: text, colours, similar palettes',
    description:
      'Give at least one of `q`, `color`, `similarTo`. Text and colour together are fused into one ranking: items that match both come ' +
      'first, then by reciprocal rank fusion of their text rank and colour rank. Only succeeded generations and references have palettes.',
  })
  @ApiOkResponse({ type: SearchResponseDto })
  @ApiErrors(
    PROTECTED_ROUTE_ERRORS,
    { 400: ['SEARCH_CRITERION_REQUIRED', 'VALIDATION_FAILED', 'NO_PALETTE'], 404: ['GENERATION_NOT_FOUND', 'REFERENCE_NOT_FOUND'] },
    DATABASE_ERRORS,
  )
  async find(@Query() query: SearchQuery, @CurrentPrincipal() { owner }: Principal): Promise<SearchResponseDto> {
    if (query.q === undefined && query.color === undefined && query.similarTo === undefined) {
      throw new AppError(HttpStatus.BAD_REQUEST, 'SEARCH_CRITERION_REQUIRED', 'Give at least one of q, color or similarTo');
    }
    if (query.color !== undefined && query.similarTo !== undefined) {
      throw new AppError(HttpStatus.BAD_REQUEST, 'VALIDATION_FAILED', 'Give color or similarTo, not both');
    }
    let similarTo: { kind: ItemKind; id: string } | undefined;
    if (query.similarTo !== undefined) {
      const [kind, id] = [query.similarTo.slice(0, query.similarTo.indexOf(':')), query.similarTo.slice(query.similarTo.indexOf(':') + 1)] as [ItemKind, string];
      if (!isGenerationId(id)) {
        throw kind === 'generation'
          ? new AppError(HttpStatus.NOT_FOUND, 'GENERATION_NOT_FOUND', `No generation with id ${id}`)
          : new AppError(HttpStatus.NOT_FOUND, 'REFERENCE_NOT_FOUND', `No reference with id ${id}`);
      }
      similarTo = { kind, id };
    }
    const { hits } = await this.search.search({
      owner,
      q: query.q,
      colors: query.color?.map((c) => parseQueryColor(c)!),
      similarTo,
      kinds: !query.kind || query.kind === 'all' ? ITEM_KINDS : [query.kind],
      limit: query.limit ?? 20,
    });
    return { items: hits.map((h) => SearchItemDto.from(h)) };
  }
}
