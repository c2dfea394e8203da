import { HttpStatus, ValidationError, ValidationPipe } from '@nestjs/common';
import { AppError } from './app-error';

function flatten(errors: ValidationError[], prefix = ''): string[] {
  return errors.flatMap((e) => {
    const path = `${prefix}${e.property}`;
    const own = Object.values(e.constraints ?? {});
    return [...own.map((m) => (m.startsWith(e.property) ? `${prefix}${m}` : `${path}: ${m}`)), ...flatten(e.children ?? [], `${path}.`)];
  });
}

/**
 * Global validation: strips nothing silently — unknown fields are rejected (`forbidNonWhitelisted`),
 * types are not coerced in bodies (a string "2" is not a count), and every problem is listed in one 400.
 */
export function createValidationPipe(): ValidationPipe {
  return new ValidationPipe({
    whitelist: true,
    forbidNonWhitelisted: true,
    forbidUnknownValues: true,
    transform: true,
    transformOptions: { enableImplicitConversion: false },
    exceptionFactory: (errors) => new AppError(HttpStatus.BAD_REQUEST, 'VALIDATION_FAILED', flatten(errors).join('; ')),
  });
}
