import { ApiProperty } from '@nestjs/swagger';

/** The body of every error answer. */
export class ErrorResponseDto {
  @ApiProperty({ example: 400 })
  statusCode: number;

  @ApiProperty({ example: 'VALIDATION_FAILED', description: 'Machine-readable code' })
  code: string;

  @ApiProperty({ example: 'prompt must be shorter than or equal to 4000 characters' })
  message: string;
}
