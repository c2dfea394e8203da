import { ValidateBy, ValidationOptions } from 'class-validator';

const PROTOCOLS = new Set(['postgres:', 'postgresql:']);

/**
 * True for a `postgres://` or `postgresql://` connection URL that names a host, either in the
 * authority (`postgres://user:pw@db:5432/name`) or as a `host` parameter, which is how a Unix
 * socket folder is given (`postgresql:///name?host=/var/run/postgresql`).
 */
export function isPostgresUrl(value: unknown): value is string {
  if (typeof value !== 'string') return false;
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    return false;
  }
  return PROTOCOLS.has(url.protocol) && (url.hostname !== '' || (url.searchParams.get('host') ?? '') !== '');
}

/** Validation rule for `DATABASE_URL`. */
export function IsPostgresUrl(options?: ValidationOptions): PropertyDecorator {
  return ValidateBy(
    {
      name: 'isPostgresUrl',
      validator: {
        validate: (value: unknown) => isPostgresUrl(value),
        defaultMessage: () => '$property must be a postgres:// or postgresql:// URL with a host',
      },
    },
    options,
  );
}

/** The URL with its password replaced by `***`, for messages and logs. */
export function redactUrl(value: string): string {
  try {
    const url = new URL(value);
    if (url.password !== '') url.password = '***';
    return url.toString();
  } catch {
    // Not a URL: hide whatever sits between `scheme://user:` and `@`, in case it is a password.
    return value.replace(/(\/\/[^/:@]*:)[^/@]*@/, '$1***@');
  }
}
