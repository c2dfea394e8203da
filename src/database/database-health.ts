import { randomUUID } from 'node:crypto';
import { open, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { Inject, Injectable } from '@nestjs/common';
import { sql } from 'kysely';
import { CachedProbe } from '../common/cached-probe';
import { AppConfig } from '../config/app-config';
import { Database, KYSELY } from './database';
import { DatabaseFaults } from './database-faults';
import { DatabaseCorruptError, DatabaseFullError, DatabaseIoError } from './database.errors';

/** How long one probe of the database folder answers further readiness checks. */
export const DATABASE_FOLDER_CHECK_TTL_MS = 1500;

/**
 * Readiness of the database: it answers a query, no damaged page has been seen (at start or since),
 * and the folder holding the SQLite file takes a small write (so a full disk or a read-only mount
 * shows before the next write fails). Rejects with the matching `DatabaseUnavailableError`.
 */
@Injectable()
export class DatabaseHealth {
  /** SQLite only: the folder of the database file (PostgreSQL's disk is the server's business). */
  private readonly folderProbe: CachedProbe | undefined;

  constructor(
    @Inject(KYSELY) private readonly db: Database,
    private readonly faults: DatabaseFaults,
    config: AppConfig,
  ) {
    if (config.database.url !== undefined) return;
    this.folderProbe = new CachedProbe((signal) => probeFolder(config.dataDir, signal), {
      ttlMs: DATABASE_FOLDER_CHECK_TTL_MS,
      timeoutError: (ms) => new DatabaseIoError(new Error(`database folder check timed out after ${ms} ms`)),
      stuckError: () => new DatabaseIoError(new Error('the previous database folder check has not finished')),
    });
  }

  async check(timeoutMs = 2000): Promise<void> {
    if (this.faults.corruption) throw new DatabaseCorruptError();
    await sql`select 1`.execute(this.db);
    await this.folderProbe?.check(timeoutMs);
  }
}

/** Writes, syncs and removes a tiny file beside the database. */
async function probeFolder(dir: string, signal: AbortSignal): Promise<void> {
  const probe = join(dir, `.db-check-${randomUUID()}.tmp`);
  try {
    signal.throwIfAborted();
    const handle = await open(probe, 'wx');
    try {
      await handle.writeFile('ok', { signal });
      await handle.datasync();
    } finally {
      await handle.close();
    }
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOSPC' || code === 'EDQUOT') throw new DatabaseFullError(error);
    throw new DatabaseIoError(error);
  } finally {
    await rm(probe, { force: true }).catch(() => undefined);
  }
}
