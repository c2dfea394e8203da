import { ApiProperty, type ApiPropertyOptions } from '@nestjs/swagger';
import {
  ASPECT_RATIOS,
  GENERATION_ERROR_CODES,
  GENERATION_STAGES,
  GENERATION_STATUSES,
  Generation,
  GenerationErrorCode,
  GenerationStage,
  GenerationStatus,
} from '../../common/generation.model';
import { PaletteColorDto } from '../../common/dto/palette-color.dto';

const EXAMPLE_ID = '0193b0c4-5d6e-7f00-8a1b-2c3d4e5f6a7b';
const milliseconds = (description: string) => ({ type: 'integer', minimum: 0, description, example: 0 }) as const;

export class GenerationImageDto {
  @ApiProperty({ type: 'integer', minimum: 0, maximum: 3, example: 0 }) index: number;
  @ApiProperty({ example: `/api/v1/generations/${EXAMPLE_ID}/images/0`, description: 'Where to download it' }) url: string;
  @ApiProperty({ example: 'image/png' }) mimeType: string;
  @ApiProperty({ type: 'integer', minimum: 1, example: 1024 }) width: number;
  @ApiProperty({ type: 'integer', minimum: 1, example: 1024 }) height: number;
  @ApiProperty({ type: 'integer', minimum: 1, example: 123456, description: 'Size of the stored file' }) bytes: number;
  @ApiProperty({ type: [PaletteColorDto], description: '`paletteSize` colours (fewer only when the image has fewer), most frequent first' })
  palette: PaletteColorDto[];
}

export class GenerationTimingsDto {
  @ApiProperty(milliseconds('From creation until a Gemini slot was free')) queueMs: number;
  @ApiProperty(milliseconds('Gemini call(s), retries included (the slowest image)')) geminiMs: number;
  @ApiProperty(milliseconds('Storing the image(s)')) uploadMs: number;
  @ApiProperty(milliseconds('Palette extraction')) paletteMs: number;
  @ApiProperty(milliseconds('From creation to the final state')) totalMs: number;
}

export class GenerationUsageDto {
  @ApiProperty({ type: 'integer', minimum: 0, example: 12 }) inputTokens: number;
  @ApiProperty({ type: 'integer', minimum: 0, example: 1290 }) outputTokens: number;
}

/**
 * The `error` of a failed or canceled generation, `null` otherwise: always present. Inline, because
 * OpenAPI 3.0 cannot make a `$ref` nullable (`nullable` beside `allOf: [$ref]` still rejects null).
 */
const GENERATION_ERROR_SCHEMA: ApiPropertyOptions = {
  type: 'object',
  nullable: true,
  selfRequired: true,
  description: 'Why the generation failed or was canceled; `null` while it runs and when it succeeded',
  required: ['code', 'message'],
  additionalProperties: false,
  properties: {
    code: { type: 'string', enum: [...GENERATION_ERROR_CODES] },
    message: { type: 'string' },
  },
  example: null,
};

export class GenerationDto {
  @ApiProperty({ format: 'uuid', description: 'UUIDv7: ids sort by creation time', example: EXAMPLE_ID }) id: string;
  @ApiProperty({ enum: GENERATION_STATUSES }) status: GenerationStatus;
  @ApiProperty({ enum: GENERATION_STAGES }) stage: GenerationStage;
  @ApiProperty({ example: 'a red apple on a blue table' }) prompt: string;
  @ApiProperty({ example: 'gemini-2.5-flash-image' }) model: string;
  @ApiProperty({ enum: ASPECT_RATIOS }) aspectRatio: string;
  @ApiProperty({ type: 'integer', minimum: 1, maximum: 4, example: 1 }) count: number;
  @ApiProperty({ type: 'integer', minimum: 1, maximum: 12, example: 5 }) paletteSize: number;
  @ApiProperty({ format: 'date-time' }) createdAt: string;
  @ApiProperty({ format: 'date-time', nullable: true, type: String }) startedAt: string | null;
  @ApiProperty({ format: 'date-time', nullable: true, type: String }) completedAt: string | null;
  @ApiProperty({ type: GenerationTimingsDto }) timings: GenerationTimingsDto;
  @ApiProperty({ type: [GenerationImageDto], description: 'The images stored so far; empty until one succeeds' }) images: GenerationImageDto[];
  @ApiProperty({ type: GenerationUsageDto }) usage: GenerationUsageDto;
  @ApiProperty(GENERATION_ERROR_SCHEMA) error: { code: GenerationErrorCode; message: string } | null;
  @ApiProperty({ type: [String], description: 'Ids of the references sent to Gemini with the prompt' }) references: string[];
  @ApiProperty({ description: "Whether the references' palettes were appended to the prompt" }) paletteHint: boolean;

  static from(g: Generation): GenerationDto {
    return {
      id: g.id,
      status: g.status,
      stage: g.stage,
      prompt: g.prompt,
      model: g.model,
      aspectRatio: g.aspectRatio,
      count: g.count,
      paletteSize: g.paletteSize,
      createdAt: g.createdAt.toISOString(),
      startedAt: g.startedAt?.toISOString() ?? null,
      completedAt: g.completedAt?.toISOString() ?? null,
      timings: { ...g.timings },
      images: g.images.map((image) => ({
        index: image.index,
        url: `/api/v1/generations/${g.id}/images/${image.index}`,
        mimeType: image.mimeType,
        width: image.width,
        height: image.height,
        bytes: image.bytes,
        palette: image.palette,
      })),
      usage: { ...g.usage },
      error: g.error ? { ...g.error } : null,
      references: [...g.references],
      paletteHint: g.paletteHint,
    };
  }
}

export class GenerationListDto {
  @ApiProperty({ type: [GenerationDto], description: 'Newest first' }) items: GenerationDto[];
  @ApiProperty({ type: String, nullable: true, description: 'Pass as `cursor` for the next page; null on the last page' })
  nextCursor: string | null;
}
