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

/**
 * The database could not serve a query for a reason outside this request: another process holds
 * its lock, its disk is full, its file is damaged or unreadable. Each answers `503` with its own
 * code; the message is fixed (no file names) and the driver's error stays in `cause`.
 * `transient` says whether the same statement may work if tried again later.
 */
export abstract class DatabaseUnavailableError extends AppError {
  abstract readonly transient: boolean;

  constructor(code: string, message: string, headers: Record<string, string>, cause?: unknown) {
    super(HttpStatus.SERVICE_UNAVAILABLE, code, message, headers);
    if (cause !== undefined) this.cause = cause;
  }
}

/** Another connection (a CLI, a backup) held the write lock for longer than the busy timeout. */
export class DatabaseBusyError extends DatabaseUnavailableError {
  readonly transient = true;
  constructor(cause?: unknown) {
    super('DATABASE_BUSY', 'The database is busy (locked by another process); retry shortly', { 'Retry-After': '1' }, cause);
    this.name = 'DatabaseBusyError';
  }
}

/** The disk (or quota) holding the database is full. */
export class DatabaseFullError extends DatabaseUnavailableError {
  readonly transient = true;
  constructor(cause?: unknown) {
    super('DATABASE_FULL', 'The database cannot grow: its disk is full; retry later', { 'Retry-After': '30' }, cause);
    this.name = 'DatabaseFullError';
  }
}

/** A page of the database file is damaged. It does not heal by itself: readiness stays 503 once seen. */
export class DatabaseCorruptError extends DatabaseUnavailableError {
  readonly transient = false;
  constructor(cause?: unknown) {
    super('DATABASE_CORRUPT', 'The database file is damaged; this instance cannot serve that data', {}, cause);
    this.name = 'DatabaseCorruptError';
  }
}

/**
 * The database server cannot be reached or has ended the session: connection refused or reset, a
 * server shutting down or starting up, no connection free within DATABASE_CONNECT_TIMEOUT_MS
 * (PostgreSQL). It usually comes back by itself (a restart, a failover).
 */
export class DatabaseUnreachableError extends DatabaseUnavailableError {
  readonly transient = true;
  constructor(cause?: unknown) {
    super('DATABASE_UNAVAILABLE', 'The database cannot be reached right now; retry shortly', { 'Retry-After': '5' }, cause);
    this.name = 'DatabaseUnreachableError';
  }
}

/** I/O errors, a read-only file or folder, a closed database. */
export class DatabaseIoError extends DatabaseUnavailableError {
  readonly transient = true;
  constructor(cause?: unknown) {
    super('DATABASE_UNAVAILABLE', 'The database cannot be read or written right now; retry later', { 'Retry-After': '5' }, cause);
    this.name = 'DatabaseIoError';
  }
}
