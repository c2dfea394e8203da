import { Global, Inject, Injectable, Module, OnApplicationShutdown } from '@nestjs/common';
import { AppConfig } from '../config/app-config';
import { createDatabase, Database, databaseFile, KYSELY } from './database';
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
 * The SQLite database under `DATA_DIR` (`hybrid-image-search.sqlite`), opened and migrated before
 * any provider that needs it is built. Exports `GenerationsRepository` (which also has `ping()` for
 * the readiness check); the Kysely instance stays inside, so a PostgreSQL dialect can replace
 * SQLite here without touching callers.
 */
@Global()
@Module({
  providers: [
    {
      provide: KYSELY,
      inject: [AppConfig],
      useFactory: (config: AppConfig): Promise<Database> => createDatabase(databaseFile(config.dataDir)),
    },
    DatabaseCloser,
    GenerationsRepository,
    GenerationsRecovery,
  ],
  exports: [GenerationsRepository],
})
export class DatabaseModule {}
