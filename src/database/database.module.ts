import { Global, Inject, Injectable, Module, OnApplicationShutdown } from '@nestjs/common';
import { AppConfig } from '../config/app-config';
import { createDatabase, Database, databaseFile, KYSELY } from './database';
import { DatabaseFaults } from './database-faults';
import { DatabaseHealth } from './database-health';
import { GenerationsRecovery } from './generations.recovery';
import { GenerationsRepository } from './generations.repository';

/**
 * Closes the database after everything else has shut down. Nest runs shutdown hooks of modules
 * nearest the root first and global modules last, and `onApplicationShutdown` after every
 * `onModuleDestroy`/`beforeApplicationShutdown`, so the pipeline can still mark interrupted work
 * while draining.
 */
@Injectable()
class DatabaseCloser implements OnApplicationShutdown {
  constructor(@Inject(KYSELY) private readonly db: Database) {}

  async onApplicationShutdown(): Promise<void> {
    await this.db.destroy();
  }
}

/**
 * The SQLite database under `DATA_DIR` (`hybrid-image-search.sqlite`), opened, migrated and checked
 * before any provider that needs it is built. Exports `GenerationsRepository`, `GenerationsRecovery`
 * (what start-up recovery found) and `DatabaseHealth` (readiness); the Kysely instance stays inside,
 * so a PostgreSQL dialect can replace SQLite here without touching callers.
 */
@Global()
@Module({
  providers: [
    { provide: DatabaseFaults, useFactory: () => new DatabaseFaults() },
    {
      provide: KYSELY,
      inject: [AppConfig, DatabaseFaults],
      useFactory: (config: AppConfig, faults: DatabaseFaults): Promise<Database> =>
        createDatabase(databaseFile(config.dataDir), { busyTimeoutMs: config.database.busyTimeoutMs, faults }),
    },
    DatabaseCloser,
    GenerationsRepository,
    GenerationsRecovery,
    DatabaseHealth,
  ],
  exports: [GenerationsRepository, GenerationsRecovery, DatabaseHealth],
})
export class DatabaseModule {}
