import { HttpStatus } from '@nestjs/common';
import { AppError } from '../common/app-error';

/** A history cursor that this service did not issue (or that was altered). Answers 400. */
export class InvalidCursorError extends AppError {
  constructor() {
    super(HttpStatus.BAD_REQUEST, 'INVALID_CURSOR', 'The cursor is not valid; use a nextCursor from a previous page');
    this.name = 'InvalidCursorError';
  }
}

/** No generation with that id. Answers 404. */
export class GenerationNotFoundError extends AppError {
  constructor(readonly id: string) {
    super(HttpStatus.NOT_FOUND, 'GENERATION_NOT_FOUND', `No generation with id ${id}`);
    this.name = 'GenerationNotFoundError';
  }
}
