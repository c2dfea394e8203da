import { Body, Controller, Delete, Get, HttpCode, HttpStatus, Param, Post, Query, Res, UseInterceptors } from '@nestjs/common';
import { ApiBody, ApiConsumes, ApiCreatedResponse, ApiFoundResponse, ApiNoContentResponse, ApiOkResponse, ApiOperation, ApiParam, ApiProduces, ApiSecurity, ApiTags } from '@nestjs/swagger';
import type { Response } from 'express';
import { pipeline } from 'node:stream/promises';
import { CurrentPrincipal } from '../auth/principal';
import { AppError } from '../common/app-error';
import { ApiErrors, DATABASE_ERRORS, PROTECTED_ROUTE_ERRORS } from '../common/api-errors';
import { isGenerationId } from '../common/ids';
import type { Principal } from '../common/principal';
import { MAX_TAG_LENGTH, MAX_TAGS, MAX_TITLE_LENGTH, Reference } from '../common/reference.model';
import { InvalidCursorError, Owner } from '../database/generations.repository';
import { ReferencesRepository } from '../database/references.repository';
import { ListGenerationsQuery } from '../generations/dto/list-generations.query';
import { StorageService } from '../storage/storage.service';
import { ImageUploadInterceptor, UploadedImage } from '../uploads/image-upload.interceptor';
import { CreateReferenceDto } from './dto/create-reference.dto';
import { ReferenceDto, ReferenceListDto } from './dto/reference.dto';
import { ReferencesService } from './references.service';
import { parseTags } from './tags';

const notFound = (id: string) => new AppError(HttpStatus.NOT_FOUND, 'REFERENCE_NOT_FOUND', `No reference with id ${id}`);

@ApiTags('references')
@ApiSecurity('api-key')
@Controller('api/v1/references')
export class ReferencesController {
  constructor(
    private readonly service: ReferencesService,
    private readonly repository: ReferencesRepository,
    private readonly storage: StorageService,
  ) {}

  @Post()
  @UseInterceptors(ImageUploadInterceptor)
  @ApiOperation({
    summary: 'Add a reference image to the library',
    description:
      'Upload one image (PNG, JPEG, WebP, AVIF, GIF, TIFF; ≤ 20 MB, ≤ 100 M pixels, ≤ PALETTE_MAX_DECODED_MB decoded) as the multipart field `image`, ' +
      'with an optional `title` and comma-separated `tags`. Its five-colour palette is extracted, the image stored, and the reference ' +
      'becomes searchable (GET /api/v1/search) by title, tags and colours. Owned by the API key that uploads it.',
  })
  @ApiConsumes('multipart/form-data')
  @ApiBody({
    schema: {
      type: 'object',
      required: ['image'],
      properties: {
        image: { type: 'string', format: 'binary', description: 'The image file' },
        title: { type: 'string', maxLength: MAX_TITLE_LENGTH, description: 'Trimmed; blank means none' },
        tags: {
          type: 'string',
          description: `Comma-separated, at most ${MAX_TAGS}, each at most ${MAX_TAG_LENGTH} characters; trimmed, lower-cased, repeats dropped`,
          example: 'warm, studio, product',
        },
      },
    },
  })
  @ApiCreatedResponse({ type: ReferenceDto })
  @ApiErrors(PROTECTED_ROUTE_ERRORS, DATABASE_ERRORS, {
    400: ['IMAGE_REQUIRED', 'VALIDATION_FAILED', 'INVALID_MULTIPART'],
    413: ['PAYLOAD_TOO_LARGE', 'IMAGE_TOO_LARGE'],
    415: ['UNSUPPORTED_IMAGE', 'UNSUPPORTED_MEDIA_TYPE'],
    500: ['PALETTE_ERROR'],
    503: ['OVERLOADED', 'UPLOADS_BUSY', 'UPLOAD_EXPIRED', 'PALETTE_BUSY', 'PALETTE_TIMEOUT', 'STORAGE_ERROR'],
  })
  async create(
    @UploadedImage() image: UploadedImage | undefined,
    @Body() body: CreateReferenceDto,
    @CurrentPrincipal() principal: Principal,
    @Res({ passthrough: true }) res: Response,
  ): Promise<ReferenceDto> {
    if (!image || image.size === 0) {
      throw new AppError(HttpStatus.BAD_REQUEST, 'IMAGE_REQUIRED', 'Send the image file in the multipart field "image"');
    }
    const tags = parseTags(body.tags);
    if ('problem' in tags) throw new AppError(HttpStatus.BAD_REQUEST, 'VALIDATION_FAILED', tags.problem);
    const title = body.title?.trim() || undefined;
    const reference = await this.service.upload(image, { title, tags: tags.tags }, principal);
    res.setHeader('Location', `/api/v1/references/${reference.id}`);
    return ReferenceDto.from(reference);
  }

  @Get()
  @ApiOperation({ summary: 'The library, newest first, paged with an opaque cursor' })
  @ApiOkResponse({ type: ReferenceListDto })
  @ApiErrors(PROTECTED_ROUTE_ERRORS, { 400: ['VALIDATION_FAILED', 'INVALID_CURSOR'] }, DATABASE_ERRORS)
  async list(@Query() query: ListGenerationsQuery, @CurrentPrincipal() { owner }: Principal): Promise<ReferenceListDto> {
    try {
      const page = await this.repository.list({ owner, limit: query.limit ?? 20, cursor: query.cursor });
      return { items: page.items.map((r) => ReferenceDto.from(r)), nextCursor: page.nextCursor };
    } catch (error) {
      if (error instanceof InvalidCursorError) throw new AppError(HttpStatus.BAD_REQUEST, 'INVALID_CURSOR', 'cursor is not a valid page cursor');
      throw error;
    }
  }

  @Get(':id')
  @ApiOperation({ summary: 'One reference' })
  @ApiParam({ name: 'id', description: 'Reference id' })
  @ApiOkResponse({ type: ReferenceDto })
  @ApiErrors(PROTECTED_ROUTE_ERRORS, { 404: ['REFERENCE_NOT_FOUND'] }, DATABASE_ERRORS)
  async get(@Param('id') id: string, @CurrentPrincipal() { owner }: Principal): Promise<ReferenceDto> {
    return ReferenceDto.from(await this.find(id, owner));
  }

  @Get(':id/image')
  @ApiOperation({ summary: 'The image bytes (or a 302 to a presigned S3 URL when S3_PRESIGN is on)' })
  @ApiParam({ name: 'id', description: 'Reference id' })
  @ApiProduces('image/png', 'image/jpeg', 'image/webp', 'image/avif', 'image/gif', 'image/tiff')
  @ApiOkResponse({ description: 'The image as uploaded', schema: { type: 'string', format: 'binary' } })
  @ApiFoundResponse({ description: 'Redirect to a presigned URL' })
  @ApiErrors(PROTECTED_ROUTE_ERRORS, { 404: ['REFERENCE_NOT_FOUND'], 503: ['STORAGE_ERROR'] }, DATABASE_ERRORS)
  async image(@Param('id') id: string, @CurrentPrincipal() { owner }: Principal, @Res() res: Response): Promise<void> {
    const reference = await this.find(id, owner);
    const presigned = await this.storage.presignedUrl(reference.storageKey);
    if (presigned) {
      res.redirect(HttpStatus.FOUND, presigned);
      return;
    }
    const object = await this.storage.open(reference.storageKey);
    res.status(HttpStatus.OK);
    res.setHeader('Content-Type', reference.mimeType);
    res.setHeader('Content-Length', String(object.contentLength));
    res.setHeader('Cache-Control', 'private, max-age=31536000, immutable');
    await pipeline(object.body, res);
  }

  @Delete(':id')
  @HttpCode(HttpStatus.NO_CONTENT)
  @ApiOperation({ summary: 'Delete a reference and its image' })
  @ApiParam({ name: 'id', description: 'Reference id' })
  @ApiNoContentResponse({ description: 'Deleted (its image too, or queued for deletion if storage is down)' })
  @ApiErrors(PROTECTED_ROUTE_ERRORS, { 404: ['REFERENCE_NOT_FOUND'] }, DATABASE_ERRORS)
  async delete(@Param('id') id: string, @CurrentPrincipal() { owner }: Principal): Promise<void> {
    if (!isGenerationId(id) || !(await this.service.delete(id, owner))) throw notFound(id);
  }

  /** The caller's reference `id`; another owner's answers 404 exactly like an unknown id. */
  private async find(id: string, owner: Owner): Promise<Reference> {
    if (!isGenerationId(id)) throw notFound(id);
    const reference = await this.repository.findById(id, owner);
    if (!reference) throw notFound(id);
    return reference;
  }
}
