import { Body, Controller, HttpCode, HttpStatus, Logger, Post, UseInterceptors } from '@nestjs/common';
import { ApiBody, ApiConsumes, ApiOperation, ApiResponse, ApiSecurity, ApiTags } from '@nestjs/swagger';
import { AppError } from '../common/app-error';
import { ApiErrors, PROTECTED_ROUTE_ERRORS } from '../common/api-errors';
import { PaletteService } from '../palette/palette.service';
import { MAX_PALETTE_SIZE, MIN_PALETTE_SIZE } from '../palette/palette.types';
import { clientClosedRequest, ImageUploadInterceptor, UploadedImage } from '../uploads/image-upload.interceptor';
import { CreatePaletteDto, DEFAULT_PALETTE_SIZE } from './dto/create-palette.dto';
import { paletteAppError } from './palette-app-error';
import { PaletteResponseDto } from './dto/palette-response.dto';

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
      'Upload one image (PNG, JPEG, WebP, AVIF, GIF, TIFF; ≤ 20 MB, ≤ 100 M pixels, ≤ PALETTE_MAX_DECODED_MB decoded) as the multipart field `image`. ' +
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
  @ApiResponse({ status: 200, type: PaletteResponseDto })
  @ApiErrors(PROTECTED_ROUTE_ERRORS, {
    400: ['IMAGE_REQUIRED', 'VALIDATION_FAILED', 'INVALID_MULTIPART'],
    413: ['PAYLOAD_TOO_LARGE', 'IMAGE_TOO_LARGE'],
    415: ['UNSUPPORTED_IMAGE', 'UNSUPPORTED_MEDIA_TYPE'],
    500: ['PALETTE_ERROR'],
    503: ['OVERLOADED', 'UPLOADS_BUSY', 'PALETTE_BUSY', 'PALETTE_TIMEOUT'],
  })
  async create(@UploadedImage() image: UploadedImage | undefined, @Body() body: CreatePaletteDto): Promise<PaletteResponseDto> {
    if (!image || image.size === 0) {
      throw new AppError(HttpStatus.BAD_REQUEST, 'IMAGE_REQUIRED', 'Send the image file in the multipart field "image"');
    }
    try {
      const file = { path: image.path, bytes: image.size };
      const { colors, width, height, swatches } = await this.palette.extract(file, body.size ?? DEFAULT_PALETTE_SIZE, { signal: image.signal });
      return { colors, width, height, swatches };
    } catch (error) {
      // The client is gone: the task was dropped or stopped, and no one reads this answer.
      if (image.signal.aborted) throw clientClosedRequest();
      throw this.toAppError(error);
    }
  }

  private toAppError(error: unknown): unknown {
    return paletteAppError(error, this.palette, this.logger);
  }
}
