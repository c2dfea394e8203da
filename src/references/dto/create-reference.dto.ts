import { ApiPropertyOptional } from '@nestjs/swagger';
import { IsOptional, IsString, Matches, MaxLength } from 'class-validator';
import { IsWellFormed } from '../../common/is-well-formed';
import { MAX_TAG_LENGTH, MAX_TAGS, MAX_TITLE_LENGTH } from '../../common/reference.model';

const NO_CONTROL_CHARS = /^[^\u0000-\u001F\u007F-\u009F]*$/;

/** The text fields of `POST /api/v1/references` (the file itself is the `image` part). */
export class CreateReferenceDto {
  @ApiPropertyOptional({ maxLength: MAX_TITLE_LENGTH, description: 'Trimmed; blank means none' })
  @IsOptional()
  @IsString()
  @MaxLength(MAX_TITLE_LENGTH)
  @Matches(NO_CONTROL_CHARS, { message: 'title must not contain control characters' })
  @IsWellFormed()
  title?: string;

  @ApiPropertyOptional({
    description: `Comma-separated, at most ${MAX_TAGS}, each at most ${MAX_TAG_LENGTH} characters; trimmed, lower-cased, repeats dropped`,
    example: 'warm, studio, product',
  })
  @IsOptional()
  @IsString()
  // The list is checked tag by tag once split (parseTags); this only bounds the raw field.
  @MaxLength(MAX_TAGS * (MAX_TAG_LENGTH + 2) + 200)
  tags?: string;
}
