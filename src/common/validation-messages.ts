/**
 * Rules that say what type a value must have. class-validator checks every rule of a property, so
 * a value of the wrong type also fails the range and length rules: `limit=abc` read "must not be
 * greater than 100; must not be less than 1; must be an integer number", which contradict each
 * other. Once a type rule fails, the other failures only repeat it.
 */
const TYPE_RULES = new Set(['isDefined', 'isString', 'isInt', 'isNumber', 'isBoolean', 'isArray', 'isObject']);

/** The messages worth showing for one property's failed rules (class-validator's `constraints`). */
export function essentialMessages(constraints: Record<string, string> | undefined): string[] {
  const failed = Object.entries(constraints ?? {});
  const typeFailures = failed.filter(([rule]) => TYPE_RULES.has(rule));
  return (typeFailures.length > 0 ? typeFailures : failed).map(([, message]) => message);
}
