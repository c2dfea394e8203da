import { Global, Inject, Injectable, Logger, Module, OnApplicationShutdown } from '@nestjs/common';
import { AppConfig } from '../config/app-config';
import { redactUrl } from '../config/database-url';
import { createDatabase, Database, databaseTarget, KYSELY } from './database';
import { DatabaseFaults } from './database-faults';
import { DatabaseHealth } from './database-health';
import { GenerationsRecovery } from './generations.recovery';
import { GenerationsRepository } from './generations.repository';
import { ReferencesRepository } from './references.repository';
import { SearchRepository } from './search.repository';
import { StorageSweepRepository } from './storage-sweep.repository';

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
 * The database: PostgreSQL when `DATABASE_URL` is set, else SQLite under `DATA_DIR`
 * (`hybrid-image-search.sqlite`), opened, migrated (and a SQLite file checked) before any provider
 * that needs it is built. Exports the repositories (generations, references, the search index, the
 * storage sweep list), `GenerationsRecovery` (what start-up
 * recovery found) and `DatabaseHealth` (readiness); the Kysely instance stays inside, so callers
 * never see which dialect runs.
 */
@Global()
@Module({
  providers: [
    { provide: DatabaseFaults, useFactory: () => new DatabaseFaults() },
    {
      provide: KYSELY,
      inject: [AppConfig, DatabaseFaults],
      useFactory: (config: AppConfig, faults: DatabaseFaults): Promise<Database> => {
        const target = databaseTarget(config);
        new Logger('Database').log(
          target.dialect === 'postgres' ? `PostgreSQL at ${redactUrl(target.url)} (pool of ${target.poolSize})` : `SQLite at ${target.filename}`,
        );
        return createDatabase(target, { busyTimeoutMs: config.database.busyTimeoutMs, faults });
      },
    },
    DatabaseCloser,
    GenerationsRepository,
    ReferencesRepository,
    SearchRepository,
    StorageSweepRepository,
    GenerationsRecovery,
    DatabaseHealth,
  ],
  exports: [GenerationsRepository, ReferencesRepository, SearchRepository, StorageSweepRepository, GenerationsRecovery, DatabaseHealth],
})
export class DatabaseModule {}
