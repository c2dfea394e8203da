import { registerDecorator, ValidationOptions } from 'class-validator';
import { parseHex, Rgb } from './color-space';

/** `#rrggbb` or `#rrggbb:weight` (the `#` may be left out: it must be sent as `%23` in a URL). */
const QUERY_COLOR = /^#?([0-9a-fA-F]{6})(?::(\d{1,3}(?:\.\d{1,6})?))?$/;
/** Largest weight: weights are relative (normalised to sum 1), written as percentages by convention. */
export const MAX_COLOR_WEIGHT = 100;

/** A query colour with its weight (1 when none is given), or null when `value` is not one. */
export function parseQueryColor(value: string): { rgb: Rgb; weight: number } | null {
  const m = QUERY_COLOR.exec(value);
  if (!m) return null;
  const weight = m[2] === undefined ? 1 : Number(m[2]);
  if (!(weight > 0 && weight <= MAX_COLOR_WEIGHT)) return null;
  return { rgb: parseHex(m[1])!, weight };
}

/** Every element is a query colour (`parseQueryColor`). */
export function IsQueryColor(options: ValidationOptions = {}): PropertyDecorator {
  return (target: object, propertyName: string | symbol) => {
    registerDecorator({
      name: 'isQueryColor',
      target: target.constructor,
      propertyName: String(propertyName),
      options: {
        message: `each color must be #rrggbb or #rrggbb:weight with a weight above 0 and at most ${MAX_COLOR_WEIGHT} (send # as %23)`,
        ...options,
      },
      validator: { validate: (value: unknown) => typeof value === 'string' && parseQueryColor(value) !== null },
    });
  };
}
