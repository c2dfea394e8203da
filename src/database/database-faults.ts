import { Logger } from '@nestjs/common';

/**
 * What the database layer has seen go wrong that does not go away by itself. Today: a damaged
 * database file (SQLite `SQLITE_CORRUPT`/`SQLITE_NOTADB`, at run time or in the start-up
 * `quick_check`). Readiness answers 503 from then on; a restart on a repaired file clears it.
 */
export class DatabaseFaults {
  private readonly logger = new Logger('Database');
  private corrupt: { since: Date; detail: string } | null = null;

  markCorrupt(detail: string): void {
    if (this.corrupt) return;
    this.corrupt = { since: new Date(), detail };
    this.logger.error(`The database file is damaged (${detail}); readiness answers 503 until it is repaired and the service restarted`);
  }

  get corruption(): { since: Date; detail: string } | null {
    return this.corrupt;
  }
}
