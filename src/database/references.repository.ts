import { HttpStatus, Inject, Injectable } from '@nestjs/common';
import { ExpressionBuilder, Insertable, Selectable } from 'kysely';
import { AppError } from '../common/app-error';
import type { PaletteColor } from '../common/generation.model';
import type { Reference } from '../common/reference.model';
import { Database, KYSELY } from './database';
import type { DatabaseSchema, ReferenceImagesTable } from './database.schema';
import { pageNewestFirst } from './generation-cursor';
import { fromJson, fromMs, MAX_PAGE_SIZE, Owner, toMs } from './generations.repository';
import { indexItem, inTransaction, referenceBody, removeItem } from './search-index';
import { StorageSweepRepository } from './storage-sweep.repository';

export interface ReferencePage {
  items: Reference[];
  /** Pass back as `cursor` for the next (older) page; null on the last page. */
  nextCursor: string | null;
}

/**
 * An upload's image was swept (its pending entry in `storage_sweep` was gone) before its record could
 * be written: the record is not written, so it never points at a deleted object. Only an upload
 * stalled for longer than its sweep delay meets this.
 */
export class UploadExpiredError extends AppError {
  constructor() {
    super(HttpStatus.SERVICE_UNAVAILABLE, 'UPLOAD_EXPIRED', 'The upload took too long to complete; send it again', { 'Retry-After': '1' });
    this.name = 'UploadExpiredError';
  }
}

type ReferenceRow = Selectable<ReferenceImagesTable>;

function ownedBy(owner: Owner) {
  return (eb: ExpressionBuilder<DatabaseSchema, 'reference_images'>) => (owner === null ? eb('owner', 'is', null) : eb('owner', '=', owner));
}

/**
 * The reference library, as the `Reference` domain type; every read is scoped to an owner (another
 * owner's reference is as absent as an unknown one). A reference's search entry (text and palette)
 * is written and removed in the same transaction as its record.
 *
 * For generation with references: `findOwned(ids, owner)` loads the caller's references by id, with
 * their storage keys and palettes, in one query.
 */
@Injectable()
export class ReferencesRepository {
  constructor(@Inject(KYSELY) private readonly db: Database) {}

  /**
   * Records a reference whose image is already stored, and indexes it for search, in one
   * transaction. With `pendingKey` (the key the upload scheduled for sweeping before it stored the
   * image), that entry is removed in the same transaction; if it is due already (the sweeper may be
   * deleting the image) or gone, nothing is written and `UploadExpiredError` is thrown.
   */
  async create(reference: Reference, opts: { pendingKey?: string } = {}): Promise<void> {
    await inTransaction(this.db, async (trx) => {
      if (opts.pendingKey !== undefined && !(await new StorageSweepRepository(trx).claimPending(opts.pendingKey))) throw new UploadExpiredError();
      await trx.insertInto('reference_images').values(referenceRow(reference)).execute();
      await indexItem(
        trx,
        { kind: 'reference', itemId: reference.id, owner: reference.owner, createdAtMs: toMs(reference.createdAt), body: referenceBody(reference.title, reference.tags) },
        [{ imageIdx: 0, palette: reference.palette }],
      );
    });
  }

  /** The reference `id` if it belongs to `owner`, else null. */
  async findById(id: string, owner: Owner): Promise<Reference | null> {
    const row = await this.db.selectFrom('reference_images').selectAll().where('id', '=', id).where(ownedBy(owner)).executeTakeFirst();
    return row ? fromRow(row) : null;
  }

  /**
   * The references among `ids` that belong to `owner`, in the order of `ids` (repeats once):
   * unknown and foreign ids are simply missing, so a caller compares lengths to refuse them.
   */
  async findOwned(ids: readonly string[], owner: Owner): Promise<Reference[]> {
    const unique = [...new Set(ids)];
    if (unique.length === 0) return [];
    const rows = await this.db.selectFrom('reference_images').selectAll().where('id', 'in', unique).where(ownedBy(owner)).execute();
    const byId = new Map(rows.map((r) => [r.id, fromRow(r)]));
    return unique.flatMap((id) => byId.get(id) ?? []);
  }

  /** Newest first by (createdAt, id), keyset paging as for generations. */
  async list({ owner, limit, cursor }: { owner: Owner; limit: number; cursor?: string }): Promise<ReferencePage> {
    if (!Number.isInteger(limit) || limit < 1 || limit > MAX_PAGE_SIZE) {
      throw new RangeError(`limit must be an integer in 1..${MAX_PAGE_SIZE}, got ${limit}`);
    }
    return pageNewestFirst(this.db.selectFrom('reference_images').selectAll().where(ownedBy(owner)), { limit, cursor }, fromRow);
  }

  /**
   * Deletes the reference `id` of `owner` and its search entry, and schedules its image for the
   * sweep (due at `sweepDueAt`), in one transaction: from then on no record points at the image, and
   * the image cannot be forgotten. Returns the deleted reference (its `storageKey` for the caller to
   * delete now, then `StorageSweepRepository.done`), or null when there was none.
   */
  async delete(id: string, owner: Owner, sweepDueAt: Date = new Date()): Promise<Reference | null> {
    return inTransaction(this.db, async (trx) => {
      const row = await trx.deleteFrom('reference_images').where('id', '=', id).where(ownedBy(owner)).returningAll().executeTakeFirst();
      if (!row) return null;
      await removeItem(trx, 'reference', id);
      await new StorageSweepRepository(trx).schedule(row.storage_key, sweepDueAt, 'deleted reference');
      return fromRow(row);
    });
  }
}

/** The row that stores `r` (the bench's bulk loader writes the same rows). */
export function referenceRow(r: Reference): Insertable<ReferenceImagesTable> {
  return {
    id: r.id,
    owner: r.owner,
    title: r.title,
    tags: JSON.stringify(r.tags),
    storage_key: r.storageKey,
    mime_type: r.mimeType,
    width: r.width,
    height: r.height,
    bytes: r.bytes,
    palette: JSON.stringify(r.palette),
    created_at: toMs(r.createdAt),
  };
}

function fromRow(row: ReferenceRow): Reference {
  return {
    id: row.id,
    owner: row.owner,
    title: row.title,
    tags: fromJson<string[]>(row.tags),
    storageKey: row.storage_key,
    mimeType: row.mime_type,
    width: Number(row.width),
    height: Number(row.height),
    bytes: Number(row.bytes),
    palette: fromJson<PaletteColor[]>(row.palette),
    createdAt: fromMs(row.created_at),
  };
}
