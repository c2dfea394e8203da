/**
 * For query strings and multipart text fields, which arrive as strings: only a plain decimal integer
 * becomes a number; anything else stays a string and fails @IsInt, so "5.0", "5abc", "0x10", "1e1"
 * or "" are refused with one clear message instead of being coerced (Number("") is 0).
 */
export const toInteger = ({ value }: { value: unknown }): unknown => (typeof value === 'string' && /^\s*-?\d{1,6}\s*$/.test(value) ? Number(value) : value);
