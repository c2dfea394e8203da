import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';
import { ArrayMaxSize, ArrayUnique, IsArray, IsBoolean, IsIn, IsInt, IsOptional, IsString, Matches, Max, MaxLength, Min, MinLength } from 'class-validator';
import { ASPECT_RATIOS, AspectRatio, MAX_GENERATION_REFERENCES } from '../../common/generation.model';
import { IsWellFormed } from '../../common/is-well-formed';

/** Any C0/C1 control character except tab, line feed and carriage return. */
const NO_CONTROL_CHARS = /^[^\u0000-\u0008\u000B\u000C\u000E-\u001F\u007F-\u009F]*$/;

export class CreateGenerationDto {
  @ApiProperty({ description: 'What to draw', minLength: 1, maxLength: 4000, example: 'a red apple on a blue table' })
  @IsString()
  @MinLength(1)
  @MaxLength(4000)
  @Matches(/\S/, { message: 'prompt must not be blank' })
  @Matches(NO_CONTROL_CHARS, { message: 'prompt must not contain control characters' })
  @IsWellFormed()
  prompt: string;

  @ApiPropertyOptional({ enum: ASPECT_RATIOS, default: '1:1' })
  @IsOptional()
  @IsIn(ASPECT_RATIOS)
  aspectRatio?: AspectRatio;

  @ApiPropertyOptional({ type: 'integer', minimum: 1, maximum: 4, default: 1, description: 'Images to generate (each is one Gemini call)' })
  @IsOptional()
  @IsInt({ message: 'count must be an integer from 1 to 4' })
  @Min(1)
  @Max(4)
  count?: number;

  @ApiPropertyOptional({ type: 'integer', minimum: 1, maximum: 12, default: 5, description: 'Colours in each image palette' })
  @IsOptional()
  @IsInt({ message: 'paletteSize must be an integer from 1 to 12' })
  @Min(1)
  @Max(12)
  paletteSize?: number;

  @ApiPropertyOptional({
    type: [String],
    maxItems: MAX_GENERATION_REFERENCES,
    uniqueItems: true,
    description: 'Ids of your references: their images go to Gemini beside the prompt, in this order',
  })
  @IsOptional()
  @IsArray()
  @ArrayMaxSize(MAX_GENERATION_REFERENCES)
  @ArrayUnique()
  @IsString({ each: true })
  @Matches(/^[A-Za-z0-9_-]{1,64}$/, { each: true, message: 'each reference must be a reference id' })
  references?: string[];

  @ApiPropertyOptional({ type: 'boolean', default: false, description: "Append the references' palettes to the prompt as hex codes" })
  @IsOptional()
  @IsBoolean()
  paletteHint?: boolean;
}
