import { Inject, Injectable } from '@nestjs/common';
import { Kysely } from 'kysely';
import { KYSELY } from './database';
import type { DatabaseSchema } from './database.schema';
import { toMs } from './generations.repository';

export interface SweepEntry {
  key: string;
  dueAt: Date;
  attempts: number;
  reason: string;
}

/**
 * The list of stored objects to delete (`storage_sweep`): written in the same transaction as the
 * record change that makes an object unreferenced (a reference deleted), or before an object is
 * stored whose record is not written yet (an upload), so no object can be forgotten, whatever
 * crashes when. `StorageSweeper` deletes the due ones.
 */
@Injectable()
export class StorageSweepRepository {
  constructor(@Inject(KYSELY) private readonly db: Kysely<DatabaseSchema>) {}

  /** Adds `key` (or moves an existing entry to `dueAt`). */
  async schedule(key: string, dueAt: Date, reason: string): Promise<void> {
    await this.db
      .insertInto('storage_sweep')
      .values({ key, due_at: toMs(dueAt), attempts: 0, reason })
      .onConflict((oc) => oc.column('key').doUpdateSet({ due_at: toMs(dueAt), reason }))
      .execute();
  }

  /**
   * An upload records its image: removes the upload's pending entry of `key`, but only while it is
   * not due (a due entry belongs to the sweeper, which may be deleting the object). True when
   * removed: the caller may now write a record that points at the object.
   */
  async claimPending(key: string, now: Date = new Date()): Promise<boolean> {
    const result = await this.db.deleteFrom('storage_sweep').where('key', '=', key).where('due_at', '>', toMs(now)).executeTakeFirst();
    return Number(result.numDeletedRows) > 0;
  }

  /** The object is gone: forget it. */
  async done(key: string): Promise<void> {
    await this.db.deleteFrom('storage_sweep').where('key', '=', key).execute();
  }

  /** A deletion failed: try again at `nextDueAt`. */
  async failed(key: string, nextDueAt: Date): Promise<void> {
    await this.db
      .updateTable('storage_sweep')
      .set((eb) => ({ due_at: toMs(nextDueAt), attempts: eb('attempts', '+', 1) }))
      .where('key', '=', key)
      .execute();
  }

  /** Entries due at `now`, oldest due first. */
  async due(now: Date, limit: number): Promise<SweepEntry[]> {
    const rows = await this.db.selectFrom('storage_sweep').selectAll().where('due_at', '<=', toMs(now)).orderBy('due_at').limit(limit).execute();
    return rows.map((r) => ({ key: r.key, dueAt: new Date(Number(r.due_at)), attempts: Number(r.attempts), reason: r.reason }));
  }
}
