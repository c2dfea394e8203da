import { Injectable, Logger } from '@nestjs/common';
import { HealthIndicatorResult, HealthIndicatorService } from '@nestjs/terminus';
import { GenerationsRepository } from '../database/generations.repository';
import { PaletteService } from '../palette/palette.service';
import { StorageService } from '../storage/storage.service';
import { ShutdownState } from './shutdown-state';

const STORAGE_CHECK_TIMEOUT_MS = 2_000;

/** StorageError messages are safe to show (fixed texts; StorageService logs the detail). */
const reason = (error: unknown) => (error instanceof Error ? error.message : String(error));
/** Readiness is open to anyone: a driver's own message (host, port, file) goes to the log only. */
const DATABASE_DOWN = 'The database did not answer';

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

@Injectable()
export class DatabaseHealthIndicator {
  private readonly logger = new Logger(DatabaseHealthIndicator.name);

  constructor(
    private readonly health: HealthIndicatorService,
    private readonly repository: GenerationsRepository,
  ) {}

  async check(key = 'database'): Promise<HealthIndicatorResult> {
    const indicator = this.health.check(key);
    try {
      await this.repository.ping();
      return indicator.up();
    } catch (error) {
      this.logger.warn(`database check failed: ${reason(error)}`);
      return indicator.down({ message: DATABASE_DOWN });
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
