import { Injectable } from '@nestjs/common';
import { HealthIndicatorResult, HealthIndicatorService } from '@nestjs/terminus';
import { AppError } from '../common/app-error';
import { DatabaseHealth } from '../database/database-health';
import { PaletteService } from '../palette/palette.service';
import { StorageService } from '../storage/storage.service';
import { ShutdownState } from './shutdown-state';

const STORAGE_CHECK_TIMEOUT_MS = 2_000;

const reason = (error: unknown) => (error instanceof Error ? error.message : String(error));

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

const DATABASE_CHECK_TIMEOUT_MS = 2_000;

/** Down when the database does not answer, a damaged page was seen, or its folder takes no write (disk full, read-only). */
@Injectable()
export class DatabaseHealthIndicator {
  constructor(
    private readonly health: HealthIndicatorService,
    private readonly database: DatabaseHealth,
  ) {}

  async check(key = 'database'): Promise<HealthIndicatorResult> {
    const indicator = this.health.check(key);
    try {
      await this.database.check(DATABASE_CHECK_TIMEOUT_MS);
      return indicator.up();
    } catch (error) {
      return indicator.down(error instanceof AppError ? { code: error.code, message: error.message } : { message: reason(error) });
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
