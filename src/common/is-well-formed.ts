import { registerDecorator, ValidationOptions } from 'class-validator';

/**
 * The string must be well-formed Unicode (`String.prototype.isWellFormed`): no lone UTF-16
 * surrogate. JSON can carry one (`"\ud800"`), and JavaScript keeps it, but UTF-8 cannot encode it:
 * it would be echoed as `\ud800`, stored, sent to Gemini and read back as U+FFFD, so the text the
 * caller gets later is not the text they sent. Non-strings pass here (`@IsString` reports them);
 * with `{ each: true }` every element of an array is checked.
 */
export function IsWellFormed(options: ValidationOptions = {}): PropertyDecorator {
  return (target: object, propertyName: string | symbol) => {
    registerDecorator({
      name: 'isWellFormed',
      target: target.constructor,
      propertyName: String(propertyName),
      options: { message: '$property must be well-formed Unicode text (it contains a lone surrogate)', ...options },
      validator: { validate: (value: unknown) => typeof value !== 'string' || value.isWellFormed() },
    });
  };
}
