import { Inject, Injectable, Logger } from '@nestjs/common';
import { JobQueue } from '../pipeline/job-queue';
import { HealthIndicatorResult, HealthIndicatorService } from '@nestjs/terminus';
import { AppError } from '../common/app-error';
import { DatabaseHealth } from '../database/database-health';
import { PaletteService } from '../palette/palette.service';
import { StorageService } from '../storage/storage.service';
import { ShutdownState } from './shutdown-state';

const STORAGE_CHECK_TIMEOUT_MS = 2_000;
/**
 * A database that does not answer within this is down for readiness, whatever its driver would
 * wait (a PostgreSQL pool waits up to DATABASE_CONNECT_TIMEOUT_MS for a connection).
 */
export const DATABASE_CHECK_TIMEOUT_MS = 2_000;

/** StorageError messages are safe to show (fixed texts; StorageService logs the detail). */
const reason = (error: unknown) => (error instanceof Error ? error.message : String(error));
/** For the log: the message and, for the service's own typed errors, the driver's error behind it. */
const detail = (error: unknown) => (error instanceof Error && error.cause !== undefined ? `${error.message} (${reason(error.cause)})` : reason(error));
/** Readiness is open to anyone: a driver's own message (host, port, file) goes to the log only. */
const DATABASE_DOWN = 'The database did not answer';

/** `promise`, or a rejection with `message` after `ms`; the promise itself is left to settle. */
function withTimeout<T>(promise: Promise<T>, ms: number, message: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(message)), ms);
  });
  promise.catch(() => undefined);
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

@Injectable()
export class StorageHealthIndicator {
  constructor(
    private readonly health: HealthIndicatorService,
    private readonly storage: StorageService,
  ) {}

  async check(key = 'storage'): Promise<HealthIndicatorResult> {
    const indicator = this.health.check(key);
    try {
      await this.storage.check(STORAGE_CHECK_TIMEOUT_MS);
      return indicator.up({ driver: this.storage.kind });
    } catch (error) {
      return indicator.down({ driver: this.storage.kind, message: reason(error) });
    }
  }
}

/** Down when the database does not answer, a damaged page was seen, or its folder takes no write (disk full, read-only). */
@Injectable()
export class DatabaseHealthIndicator {
  private readonly logger = new Logger(DatabaseHealthIndicator.name);

  constructor(
    private readonly health: HealthIndicatorService,
    private readonly database: DatabaseHealth,
  ) {}

  async check(key = 'database'): Promise<HealthIndicatorResult> {
    const indicator = this.health.check(key);
    try {
      await withTimeout(this.database.check(DATABASE_CHECK_TIMEOUT_MS), DATABASE_CHECK_TIMEOUT_MS, `the database did not answer within ${DATABASE_CHECK_TIMEOUT_MS} ms`);
      return indicator.up();
    } catch (error) {
      this.logger.warn(`database check failed: ${detail(error)}`);
      // The service's own database errors carry fixed texts; a driver's message stays in the log.
      return indicator.down(error instanceof AppError ? { code: error.code, message: error.message } : { message: DATABASE_DOWN });
    }
  }
}

@Injectable()
export class PaletteHealthIndicator {
  constructor(
    private readonly health: HealthIndicatorService,
    private readonly palette: PaletteService,
  ) {}

  check(key = 'palette'): HealthIndicatorResult {
    const indicator = this.health.check(key);
    const stats = this.palette.stats();
    return this.palette.isAccepting() ? indicator.up({ ...stats }) : indicator.down({ ...stats, message: 'palette pool is not accepting work' });
  }
}

@Injectable()
export class ShutdownHealthIndicator {
  constructor(
    private readonly health: HealthIndicatorService,
    private readonly state: ShutdownState,
  ) {}

  check(key = 'lifecycle'): HealthIndicatorResult {
    const indicator = this.health.check(key);
    return this.state.shuttingDown ? indicator.down({ message: 'shutting down' }) : indicator.up();
  }
}

/** The job queue: in-process, always up; on Redis, down while Redis does not answer (new generations get 503). */
@Injectable()
export class QueueHealthIndicator {
  private readonly logger = new Logger(QueueHealthIndicator.name);

  constructor(
    private readonly health: HealthIndicatorService,
    @Inject(JobQueue) private readonly queue: JobQueue,
  ) {}

  async check(key = 'queue'): Promise<HealthIndicatorResult> {
    const indicator = this.health.check(key);
    try {
      await this.queue.ping();
      return indicator.up({ kind: this.queue.kind });
    } catch (error) {
      this.logger.warn(`queue check failed: ${reason(error)}`);
      return indicator.down({ kind: this.queue.kind, message: 'The job queue (Redis) did not answer' });
    }
  }
}
