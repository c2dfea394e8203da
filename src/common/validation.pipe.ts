import { ArgumentMetadata, HttpStatus, ValidationError, ValidationPipe } from '@nestjs/common';
import { AppError } from './app-error';
import { essentialMessages } from './validation-messages';

function flatten(errors: ValidationError[], prefix = ''): string[] {
  return errors.flatMap((e) => {
    const path = `${prefix}${e.property}`;
    const own = essentialMessages(e.constraints);
    return [...own.map((m) => (m.startsWith(e.property) ? `${prefix}${m}` : `${path}: ${m}`)), ...flatten(e.children ?? [], `${path}.`)];
  });
}

/**
 * Request bodies and queries here are flat; no legitimate one nests deeper than this. A 64 kB JSON
 * body can nest 30 000 levels, which overflows the stack of class-transformer's recursive copy.
 */
export const MAX_INPUT_DEPTH = 16;
/** class-transformer skips these keys without a word, so `forbidNonWhitelisted` never sees them. */
const UNSAFE_KEYS = new Set(['__proto__', 'constructor', 'prototype']);

/** True when `value` nests objects/arrays deeper than `max`; iterative, so hostile depth cannot overflow it. */
function nestsDeeperThan(value: unknown, max: number): boolean {
  const stack: [unknown, number][] = [[value, 0]];
  while (stack.length > 0) {
    const [node, depth] = stack.pop()!;
    if (node === null || typeof node !== 'object' || ArrayBuffer.isView(node)) continue;
    if (depth > max) return true;
    for (const child of Object.values(node)) stack.push([child, depth + 1]);
  }
  return false;
}

/** What makes a body or query unacceptable before class-transformer touches it, or null. */
function structuralProblem(value: unknown): string | null {
  if (value === null || typeof value !== 'object') return null;
  const unsafe = Object.keys(value).find((key) => UNSAFE_KEYS.has(key));
  if (unsafe) return `property ${unsafe} should not exist`;
  if (nestsDeeperThan(value, MAX_INPUT_DEPTH)) return `input nests deeper than ${MAX_INPUT_DEPTH} levels`;
  return null;
}

class StrictValidationPipe extends ValidationPipe {
  override async transform(value: unknown, metadata: ArgumentMetadata): Promise<unknown> {
    if (metadata.type === 'body' || metadata.type === 'query') {
      const problem = structuralProblem(value);
      if (problem) throw new AppError(HttpStatus.BAD_REQUEST, 'VALIDATION_FAILED', problem);
    }
    return super.transform(value, metadata);
  }
}

/**
 * Global validation: strips nothing silently — unknown fields are rejected (`forbidNonWhitelisted`,
 * plus the keys class-transformer would drop unseen), types are not coerced in bodies (a string "2"
 * is not a count), absurdly nested input is refused before it is copied, and every problem is
 * listed in one 400 (a value of the wrong type once, not again for each range rule it cannot meet).
 */
export function createValidationPipe(): ValidationPipe {
  return new StrictValidationPipe({
    whitelist: true,
    forbidNonWhitelisted: true,
    forbidUnknownValues: true,
    transform: true,
    transformOptions: { enableImplicitConversion: false },
    exceptionFactory: (errors) => new AppError(HttpStatus.BAD_REQUEST, 'VALIDATION_FAILED', flatten(errors).join('; ')),
  });
}
