import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';
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

export class GenerationImageDto {
  @ApiProperty() index: number;
  @ApiProperty({ example: '/api/v1/generations/0193…/images/0' }) url: string;
  @ApiProperty({ example: 'image/png' }) mimeType: string;
  @ApiProperty({ example: 1024 }) width: number;
  @ApiProperty({ example: 1024 }) height: number;
  @ApiProperty({ example: 123456 }) bytes: number;
  @ApiProperty({ type: [PaletteColorDto] }) palette: PaletteColorDto[];
}

export class GenerationTimingsDto {
  @ApiProperty() queueMs: number;
  @ApiProperty() geminiMs: number;
  @ApiProperty() uploadMs: number;
  @ApiProperty() paletteMs: number;
  @ApiProperty() totalMs: number;
}

export class GenerationUsageDto {
  @ApiProperty() inputTokens: number;
  @ApiProperty() outputTokens: number;
}

export class GenerationErrorDto {
  @ApiProperty({ enum: GENERATION_ERROR_CODES }) code: GenerationErrorCode;
  @ApiProperty() message: string;
}

export class GenerationDto {
  @ApiProperty({ example: '0193b0c4-5d6e-7f00-8a1b-2c3d4e5f6a7b' }) id: string;
  @ApiProperty({ enum: GENERATION_STATUSES }) status: GenerationStatus;
  @ApiProperty({ enum: GENERATION_STAGES }) stage: GenerationStage;
  @ApiProperty() prompt: string;
  @ApiProperty({ example: 'gemini-2.5-flash-image' }) model: string;
  @ApiProperty({ enum: ASPECT_RATIOS }) aspectRatio: string;
  @ApiProperty() count: number;
  @ApiProperty() paletteSize: number;
  @ApiProperty({ format: 'date-time' }) createdAt: string;
  @ApiProperty({ format: 'date-time', nullable: true, type: String }) startedAt: string | null;
  @ApiProperty({ format: 'date-time', nullable: true, type: String }) completedAt: string | null;
  @ApiProperty({ type: GenerationTimingsDto }) timings: GenerationTimingsDto;
  @ApiProperty({ type: [GenerationImageDto] }) images: GenerationImageDto[];
  @ApiProperty({ type: GenerationUsageDto }) usage: GenerationUsageDto;
  @ApiPropertyOptional({ type: GenerationErrorDto, nullable: true }) error: GenerationErrorDto | null;

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
    };
  }
}

export class GenerationListDto {
  @ApiProperty({ type: [GenerationDto] }) items: GenerationDto[];
  @ApiProperty({ type: String, nullable: true, description: 'Pass as `cursor` for the next page; null on the last page' })
  nextCursor: string | null;
}
