/// <reference types="multer" />
import {
  BadRequestException,
  Body,
  CallHandler,
  Controller,
  ExecutionContext,
  HttpCode,
  HttpStatus,
  Injectable,
  Logger,
  PayloadTooLargeException,
  Post,
  UnsupportedMediaTypeException,
  UploadedFile,
  UseInterceptors,
} from '@nestjs/common';
import { FileInterceptor } from '@nestjs/platform-express';
import {
  ApiBadRequestResponse,
  ApiBody,
  ApiConsumes,
  ApiOkResponse,
  ApiOperation,
  ApiPayloadTooLargeResponse,
  ApiSecurity,
  ApiServiceUnavailableResponse,
  ApiTags,
  ApiUnsupportedMediaTypeResponse,
} from '@nestjs/swagger';
import type { Observable } from 'rxjs';
import { AppError } from '../common/app-error';
import { ErrorResponseDto } from '../common/dto/error-response.dto';
import { PaletteError } from '../palette/palette.errors';
import { PaletteService } from '../palette/palette.service';
import { MAX_PALETTE_SIZE, MIN_PALETTE_SIZE } from '../palette/palette.types';
import { CreatePaletteDto, DEFAULT_PALETTE_SIZE } from './dto/create-palette.dto';
import { PaletteResponseDto } from './dto/palette-response.dto';

export const MAX_IMAGE_BYTES = 20 * 1024 * 1024;

/**
 * Multer (memory storage) for the `image` part, with its errors turned into the contract's codes:
 * Nest's own mapping gives the right statuses but generic codes and messages.
 */
@Injectable()
export class ImageUploadInterceptor extends FileInterceptor('image', {
  limits: { fileSize: MAX_IMAGE_BYTES, files: 1, fields: 8, fieldSize: 1024, parts: 9 },
}) {
  override async intercept(context: ExecutionContext, next: CallHandler): Promise<Observable<unknown>> {
    try {
      return await super.intercept(context, next);
    } catch (error) {
      if (error instanceof PayloadTooLargeException) {
        throw new AppError(HttpStatus.PAYLOAD_TOO_LARGE, 'PAYLOAD_TOO_LARGE', `The image must be at most ${MAX_IMAGE_BYTES / 1024 / 1024} MB`);
      }
      if (error instanceof UnsupportedMediaTypeException) {
        throw new AppError(HttpStatus.UNSUPPORTED_MEDIA_TYPE, 'UNSUPPORTED_MEDIA_TYPE', 'Send the image as multipart/form-data');
      }
      if (error instanceof BadRequestException) {
        throw new AppError(HttpStatus.BAD_REQUEST, 'INVALID_MULTIPART', `Invalid multipart body: ${error.message}`);
      }
      throw error;
    }
  }
}

@ApiTags('palettes')
@ApiSecurity('api-key')
@Controller('api/v1/palettes')
export class PalettesController {
  private readonly logger = new Logger(PalettesController.name);

  constructor(private readonly palette: PaletteService) {}

  @Post()
  @HttpCode(HttpStatus.OK)
  @UseInterceptors(ImageUploadInterceptor)
  @ApiOperation({
    summary: 'Extract the colour palette of an uploaded image',
    description:
      'Upload one image (PNG, JPEG, WebP, AVIF, GIF, TIFF; ≤ 20 MB, ≤ 100 M pixels) as the multipart field `image`. ' +
      'Answers its `size` dominant colours, most frequent first, with their share of the opaque pixels, plus ' +
      "node-vibrant's named swatches. Animated images: first frame; EXIF orientation is applied.",
  })
  @ApiConsumes('multipart/form-data')
  @ApiBody({
    schema: {
      type: 'object',
      required: ['image'],
      properties: {
        image: { type: 'string', format: 'binary', description: 'The image file' },
        size: { type: 'integer', minimum: MIN_PALETTE_SIZE, maximum: MAX_PALETTE_SIZE, default: DEFAULT_PALETTE_SIZE },
      },
    },
  })
  @ApiOkResponse({ type: PaletteResponseDto })
  @ApiBadRequestResponse({ type: ErrorResponseDto, description: 'IMAGE_REQUIRED, VALIDATION_FAILED (size), INVALID_MULTIPART' })
  @ApiPayloadTooLargeResponse({ type: ErrorResponseDto, description: 'PAYLOAD_TOO_LARGE (> 20 MB), IMAGE_TOO_LARGE (> 100 M pixels)' })
  @ApiUnsupportedMediaTypeResponse({ type: ErrorResponseDto, description: 'UNSUPPORTED_IMAGE: not an image of a supported format, or truncated/corrupt' })
  @ApiServiceUnavailableResponse({ type: ErrorResponseDto, description: 'PALETTE_BUSY: the palette queue is full; see Retry-After' })
  async create(@UploadedFile() file: Express.Multer.File | undefined, @Body() body: CreatePaletteDto): Promise<PaletteResponseDto> {
    if (!file || file.size === 0) {
      throw new AppError(HttpStatus.BAD_REQUEST, 'IMAGE_REQUIRED', 'Send the image file in the multipart field "image"');
    }
    try {
      const { colors, width, height, swatches } = await this.palette.extract(file.buffer, body.size ?? DEFAULT_PALETTE_SIZE);
      return { colors, width, height, swatches };
    } catch (error) {
      throw this.toAppError(error);
    }
  }

  private toAppError(error: unknown): unknown {
    if (!(error instanceof PaletteError)) return error;
    switch (error.code) {
      case 'UNSUPPORTED_IMAGE':
        return new AppError(HttpStatus.UNSUPPORTED_MEDIA_TYPE, error.code, error.message);
      case 'IMAGE_TOO_LARGE':
        return new AppError(HttpStatus.PAYLOAD_TOO_LARGE, error.code, error.message);
      case 'PALETTE_BUSY':
        return new AppError(HttpStatus.SERVICE_UNAVAILABLE, error.code, error.message, {
          'Retry-After': String(this.palette.retryAfterSeconds()),
        });
      case 'PALETTE_ERROR':
        this.logger.error(error.message);
        return new AppError(HttpStatus.INTERNAL_SERVER_ERROR, error.code, 'The palette could not be extracted');
    }
  }
}
