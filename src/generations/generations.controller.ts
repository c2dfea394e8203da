import { Body, Controller, Get, Headers, HttpCode, HttpStatus, Param, Post, Query, Req, Res, UseInterceptors } from '@nestjs/common';
import { ApiHeader, ApiOperation, ApiParam, ApiResponse, ApiSecurity, ApiTags } from '@nestjs/swagger';
import type { Request, Response } from 'express';
import { pipeline } from 'node:stream/promises';
import { AppError } from '../common/app-error';
import { ApiErrors, DATABASE_ERRORS, JSON_BODY_ERRORS, PROTECTED_ROUTE_ERRORS } from '../common/api-errors';
import { JsonBodyInterceptor } from '../common/json-body.interceptor';
import { Generation, isFinal } from '../common/generation.model';
import { isGenerationId } from '../common/ids';
import { GenerationsRepository, InvalidCursorError, Owner } from '../database/generations.repository';
import { CurrentPrincipal } from '../auth/principal';
import type { Principal } from '../common/principal';
import { GenerationEvents } from '../pipeline/generation-events';
import { PipelineService } from '../pipeline/pipeline.service';
import { isStorageError } from '../storage/storage.errors';
import { StorageService } from '../storage/storage.service';
import { CreateGenerationDto } from './dto/create-generation.dto';
import { GenerationDto, GenerationListDto } from './dto/generation.dto';
import { DEFAULT_PAGE_SIZE, ListGenerationsQuery } from './dto/list-generations.query';
import { GenerationStreamService } from './generation-stream.service';

export const MAX_PREFER_WAIT_S = 60;

/** `Prefer: wait=N` (RFC 7240) → seconds, clamped to 0..60; absent or malformed → 0. */
export function parsePreferWait(header: string | undefined): number {
  const match = /(?:^|[,;\s])wait\s*=\s*"?(\d{1,6})"?/i.exec(header ?? '');
  return match ? Math.min(Number(match[1]), MAX_PREFER_WAIT_S) : 0;
}

/** Media types a stored image can have (what Gemini answers). */
const IMAGE_TYPES = ['image/png', 'image/jpeg', 'image/webp'];
const ID_PARAM = { name: 'id', description: 'Generation id (a UUIDv7)', schema: { type: 'string', example: '0193b0c4-5d6e-7f00-8a1b-2c3d4e5f6a7b' } };
const CREATED_HEADERS = {
  Location: { required: true, description: 'The generation: `/api/v1/generations/{id}`', schema: { type: 'string' } },
  'Preference-Applied': { description: '`wait=N` when `Prefer: wait=N` was honoured', schema: { type: 'string' } },
};

const notFound = (id: string) => new AppError(HttpStatus.NOT_FOUND, 'GENERATION_NOT_FOUND', `No generation with id ${id}`);

@ApiTags('generations')
@ApiSecurity('api-key')
@Controller('api/v1/generations')
export class GenerationsController {
  constructor(
    private readonly pipeline: PipelineService,
    private readonly repository: GenerationsRepository,
    private readonly events: GenerationEvents,
    private readonly storage: StorageService,
    private readonly streams: GenerationStreamService,
  ) {}

  @Post()
  @UseInterceptors(JsonBodyInterceptor)
  @ApiOperation({
    summary: 'Start a generation',
    description:
      'Queues the prompt for Gemini, then stores the images and extracts their palettes. Answers 202 at once, ' +
      'or with `Prefer: wait=N` (N ≤ 60) waits up to N seconds and answers 201 with the finished generation.',
  })
  @ApiHeader({ name: 'Prefer', required: false, description: '`wait=N`: wait up to N (≤ 60) seconds for the result', schema: { type: 'string', example: 'wait=30' } })
  @ApiResponse({ status: 201, type: GenerationDto, description: 'Finished within the `Prefer: wait` time', headers: CREATED_HEADERS })
  @ApiResponse({ status: 202, type: GenerationDto, description: 'Accepted; poll the `Location` or follow its `/events`', headers: CREATED_HEADERS })
  @ApiErrors(
    PROTECTED_ROUTE_ERRORS,
    JSON_BODY_ERRORS,
    { 400: ['UNKNOWN_REFERENCE'], 429: ['QUEUE_FULL', 'TOO_MANY_ACTIVE_GENERATIONS'], 503: ['SHUTTING_DOWN', 'QUEUE_UNAVAILABLE', 'OVERLOADED'] },
    DATABASE_ERRORS,
  )
  async create(
    @Body() body: CreateGenerationDto,
    @Headers('prefer') prefer: string | undefined,
    @CurrentPrincipal() principal: Principal,
    @Res({ passthrough: true }) res: Response,
  ): Promise<GenerationDto> {
    const accepted = await this.pipeline.submit(
      {
        prompt: body.prompt,
        aspectRatio: body.aspectRatio ?? '1:1',
        count: body.count ?? 1,
        paletteSize: body.paletteSize ?? 5,
        references: body.references ?? [],
        paletteHint: body.paletteHint ?? false,
      },
      principal,
    );
    res.setHeader('Location', `/api/v1/generations/${accepted.id}`);
    const waitS = parsePreferWait(prefer);
    let current: Generation = accepted;
    if (waitS > 0) {
      res.setHeader('Preference-Applied', `wait=${waitS}`);
      current = (await this.events.waitForFinal(accepted.id, waitS * 1000, () => this.repository.findById(accepted.id, principal.owner))) ?? accepted;
    }
    res.status(isFinal(current.status) ? HttpStatus.CREATED : HttpStatus.ACCEPTED);
    return GenerationDto.from(current);
  }

  @Get()
  @ApiOperation({ summary: 'History, newest first, paged with an opaque cursor' })
  @ApiResponse({ status: 200, type: GenerationListDto })
  @ApiErrors(PROTECTED_ROUTE_ERRORS, { 400: ['VALIDATION_FAILED', 'INVALID_CURSOR'] }, DATABASE_ERRORS)
  async list(@Query() query: ListGenerationsQuery, @CurrentPrincipal() { owner }: Principal): Promise<GenerationListDto> {
    try {
      const page = await this.repository.list({ owner, limit: query.limit ?? DEFAULT_PAGE_SIZE, cursor: query.cursor });
      return { items: page.items.map((g) => GenerationDto.from(g)), nextCursor: page.nextCursor };
    } catch (error) {
      if (error instanceof InvalidCursorError) throw new AppError(HttpStatus.BAD_REQUEST, 'INVALID_CURSOR', 'cursor is not a valid page cursor');
      throw error;
    }
  }

  @Get(':id')
  @ApiOperation({ summary: 'One generation' })
  @ApiParam(ID_PARAM)
  @ApiResponse({ status: 200, type: GenerationDto })
  @ApiErrors(PROTECTED_ROUTE_ERRORS, { 404: ['GENERATION_NOT_FOUND'] }, DATABASE_ERRORS)
  async get(@Param('id') id: string, @CurrentPrincipal() { owner }: Principal): Promise<GenerationDto> {
    return GenerationDto.from(await this.find(id, owner));
  }

  @Post(':id/cancel')
  @HttpCode(HttpStatus.OK)
  @ApiOperation({ summary: 'Cancel a queued or running generation (aborts its Gemini call)' })
  @ApiParam(ID_PARAM)
  @ApiResponse({ status: 200, type: GenerationDto, description: 'The generation, now `canceled`' })
  @ApiErrors(PROTECTED_ROUTE_ERRORS, { 404: ['GENERATION_NOT_FOUND'], 409: ['GENERATION_FINISHED'] }, DATABASE_ERRORS)
  async cancel(@Param('id') id: string, @CurrentPrincipal() { owner }: Principal): Promise<GenerationDto> {
    if (!isGenerationId(id)) throw notFound(id);
    return GenerationDto.from(await this.pipeline.cancel(id, owner));
  }

  @Get(':id/images/:index')
  @ApiOperation({ summary: 'Image bytes (or a 302 to a presigned S3 URL when S3_PRESIGN is on)' })
  @ApiParam(ID_PARAM)
  @ApiParam({ name: 'index', description: 'Image index, 0 .. count − 1', schema: { type: 'integer', minimum: 0, maximum: 3 } })
  @ApiResponse({
    status: 200,
    description: 'The image bytes, with the `Content-Type` it was stored with',
    content: Object.fromEntries(IMAGE_TYPES.map((type) => [type, { schema: { type: 'string', format: 'binary' } }])),
    headers: { 'Content-Length': { required: true, schema: { type: 'integer' } }, 'Cache-Control': { schema: { type: 'string', example: 'private, max-age=31536000, immutable' } } },
  })
  @ApiResponse({
    status: 302,
    description: 'With `S3_PRESIGN=true`: a redirect to a presigned S3 URL of the image',
    headers: { Location: { required: true, description: 'The presigned URL', schema: { type: 'string', format: 'uri' } } },
  })
  @ApiErrors(PROTECTED_ROUTE_ERRORS, { 404: ['GENERATION_NOT_FOUND', 'IMAGE_NOT_FOUND'], 503: ['STORAGE_ERROR'] }, DATABASE_ERRORS)
  async image(
    @Param('id') id: string,
    @Param('index') index: string,
    @CurrentPrincipal() { owner }: Principal,
    @Res() res: Response,
  ): Promise<void> {
    const generation = await this.find(id, owner);
    const image = /^\d{1,2}$/.test(index) ? generation.images.find((i) => i.index === Number(index)) : undefined;
    if (!image) throw new AppError(HttpStatus.NOT_FOUND, 'IMAGE_NOT_FOUND', `Generation ${id} has no image ${index}`);
    const presigned = await this.storage.presignedUrl(image.key);
    if (presigned) {
      res.redirect(HttpStatus.FOUND, presigned);
      return;
    }
    const object = await this.storage.open(image.key).catch((error: unknown) => {
      // The record names a file the store no longer has (removed by hand): the image is gone.
      if (isStorageError(error, 'NOT_FOUND')) throw new AppError(HttpStatus.NOT_FOUND, 'IMAGE_NOT_FOUND', `Generation ${id} has no image ${index} any more`);
      throw error;
    });
    res.status(HttpStatus.OK);
    res.setHeader('Content-Type', object.contentType || image.mimeType);
    res.setHeader('Content-Length', String(object.contentLength));
    res.setHeader('Cache-Control', 'private, max-age=31536000, immutable');
    await pipeline(object.body, res);
  }

  @Get(':id/events')
  @ApiOperation({
    summary: 'Server-Sent Events: one event per status/stage change',
    description:
      'Each `data:` line is the generation as JSON. The stream starts with the current state and closes after the final one. ' +
      'Open streams are capped per client (SSE_MAX_STREAMS_PER_CLIENT) and in total (SSE_MAX_STREAMS).',
  })
  @ApiParam(ID_PARAM)
  @ApiResponse({
    status: 200,
    description:
      'A stream of `event: generation` messages whose `data:` is a `GenerationDto` (JSON on one line), and `: keep-alive` comments every 15 s',
    content: { 'text/event-stream': { schema: { type: 'string', example: 'event: generation\nid: queued:queued\ndata: {"id":"…","status":"queued",…}\n\n' } } },
  })
  @ApiErrors(PROTECTED_ROUTE_ERRORS, { 404: ['GENERATION_NOT_FOUND'], 429: ['TOO_MANY_STREAMS'] }, DATABASE_ERRORS)
  async stream(@Param('id') id: string, @CurrentPrincipal() principal: Principal, @Req() req: Request, @Res() res: Response): Promise<void> {
    await this.streams.open(id, principal, () => this.find(id, principal.owner), req, res);
  }

  /** The caller's generation `id`; another owner's answers 404 exactly like an unknown id. */
  private async find(id: string, owner: Owner): Promise<Generation> {
    if (!isGenerationId(id)) throw notFound(id);
    const generation = await this.repository.findById(id, owner);
    if (!generation) throw notFound(id);
    return generation;
  }
}
