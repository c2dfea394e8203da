import { Inject, Injectable } from '@nestjs/common';
import { ExpressionBuilder, Insertable, Selectable, sql, Updateable } from 'kysely';
import {
  emptyTimings,
  GENERATION_STAGES,
  GenerationImage,
  GenerationStage,
  GenerationUsage,
  FINAL_STATUSES,
  Generation,
  GENERATION_STATUSES,
  GenerationError,
  GenerationStatus,
} from '../common/generation.model';
import { Database, KYSELY } from './database';
import { GenerationNotFoundError } from './database.errors';
import type { DatabaseSchema, GenerationImagesTable, GenerationsTable } from './database.schema';
import { pageNewestFirst } from './generation-cursor';
import { IndexedPalette, indexItem, inTransaction, removeItem, SearchDocument } from './search-index';

// The errors callers catch travel with the repository that throws them.
export { GenerationNotFoundError, InvalidCursorError } from './database.errors';

/** The fields of a generation that change after it is created. */
export type GenerationPatch = Partial<
  Pick<Generation, 'status' | 'stage' | 'startedAt' | 'completedAt' | 'timings' | 'images' | 'usage' | 'error'>
>;

export interface GenerationPage {
  items: Generation[];
  /** Pass back as `cursor` for the next (older) page; null on the last page. */
  nextCursor: string | null;
}

/** Largest page `list()` serves; the HTTP layer validates its own, smaller bound. */
export const MAX_PAGE_SIZE = 1000;

const UNFINISHED_STATUSES = GENERATION_STATUSES.filter((s) => !FINAL_STATUSES.includes(s));

type GenerationRow = Selectable<GenerationsTable>;
type ImageRow = Selectable<GenerationImagesTable>;

/** How one image of a generation ended: its image, or why it has none, with its stage times and usage. */
export interface ImageRecord {
  index: number;
  image: GenerationImage | null;
  error: GenerationError | null;
  ms: { gemini: number; upload: number; palette: number };
  usage: GenerationUsage;
}

/** Whose data a query may see: an API key's name, or null for what was created with keys off. */
export type Owner = string | null;

/** The one owner filter every user-facing query uses (`owner IS NULL` is not `owner = NULL`). */
function ownedBy(owner: Owner) {
  return (eb: ExpressionBuilder<DatabaseSchema, 'generations'>) => (owner === null ? eb('owner', 'is', null) : eb('owner', '=', owner));
}

/** The search entry of a generation: its prompt, and the palettes of its images once it succeeded. */
function searchDocument(g: Pick<Generation, 'id' | 'owner' | 'createdAt' | 'prompt'>): SearchDocument {
  return { kind: 'generation', itemId: g.id, owner: g.owner, createdAtMs: toMs(g.createdAt), body: g.prompt };
}

function searchPalettes(g: Pick<Generation, 'status' | 'images'>): IndexedPalette[] {
  return g.status === 'succeeded' ? g.images.map((image) => ({ imageIdx: image.index, palette: image.palette })) : [];
}

/**
 * Generations in the database, as the `Generation` domain type. Every write is one SQL statement or
 * one transaction, so a crash can never leave a half-written record; the conditional writes
 * (`updateIfNotFinal`, `failUnfinished`) decide and write in that same statement, so they cannot
 * race with each other. The search index follows in the same transaction: a generation's prompt is
 * indexed when it is created, its palettes when it succeeds, and both go when it is deleted.
 */
@Injectable()
export class GenerationsRepository {
  constructor(@Inject(KYSELY) private readonly db: Database) {}

  async create(generation: Generation): Promise<void> {
    await inTransaction(this.db, async (trx) => {
      await trx.insertInto('generations').values(generationRow(generation)).execute();
      await indexItem(trx, searchDocument(generation), searchPalettes(generation));
    });
  }

  /** The caller's generations among `ids` (unknown and foreign ones are missing), in no particular order. */
  async findByIds(ids: readonly string[], owner: Owner): Promise<Generation[]> {
    if (ids.length === 0) return [];
    const rows = await this.db.selectFrom('generations').selectAll().where('id', 'in', [...new Set(ids)]).where(ownedBy(owner)).execute();
    return rows.map(fromRow);
  }

  /**
   * Deletes the generation `id` of `owner` with its image records and search entry; returns it (its
   * images' storage keys are the caller's to delete), or null when there was none.
   */
  async delete(id: string, owner: Owner): Promise<Generation | null> {
    return inTransaction(this.db, async (trx) => {
      const row = await trx.deleteFrom('generations').where('id', '=', id).where(ownedBy(owner)).returningAll().executeTakeFirst();
      if (!row) return null;
      await removeItem(trx, 'generation', id);
      return fromRow(row);
    });
  }

  /**
   * The generation with `id` if it belongs to `owner` (null: created with API keys off), else null:
   * another owner's generation is as absent as an unknown one.
   */
  async findById(id: string, owner: Owner): Promise<Generation | null> {
    const row = await this.db.selectFrom('generations').selectAll().where('id', '=', id).where(ownedBy(owner)).executeTakeFirst();
    return row ? fromRow(row) : null;
  }

  /**
   * Newest first by (createdAt, id). Keyset paging: a page costs the same however deep it is, and
   * rows inserted meanwhile neither repeat nor shift later pages. Throws `InvalidCursorError` for a
   * cursor this method did not issue.
   */
  async list({ owner, limit, cursor }: { owner: Owner; limit: number; cursor?: string }): Promise<GenerationPage> {
    if (!Number.isInteger(limit) || limit < 1 || limit > MAX_PAGE_SIZE) {
      throw new RangeError(`limit must be an integer in 1..${MAX_PAGE_SIZE}, got ${limit}`);
    }
    return pageNewestFirst(this.db.selectFrom('generations').selectAll().where(ownedBy(owner)), { limit, cursor }, fromRow);
  }

  /**
   * Applies `patch` only while the generation is still queued or running, in one statement, so
   * a cancel and the pipeline finishing at the same moment cannot both win. Returns null when it
   * was already final; throws `GenerationNotFoundError` when there is no such generation.
   */
  async updateIfNotFinal(id: string, patch: GenerationPatch): Promise<Generation | null> {
    const updated = await inTransaction(this.db, async (trx) => {
      const row = await trx
        .updateTable('generations')
        .set(toPatchRow(patch))
        .where('id', '=', id)
        .where('status', 'in', UNFINISHED_STATUSES)
        .returningAll()
        .executeTakeFirst();
      if (!row) return null;
      const generation = fromRow(row);
      // Succeeded: its palettes become searchable with the final state, or not at all.
      if (generation.status === 'succeeded') await indexItem(trx, searchDocument(generation), searchPalettes(generation));
      return generation;
    });
    if (updated) return updated;
    const exists = await this.db.selectFrom('generations').select('id').where('id', '=', id).executeTakeFirst();
    if (!exists) throw new GenerationNotFoundError(id);
    return null;
  }

  /**
   * Marks every queued or running generation `failed` with `error` (stage kept, so it shows where
   * it stopped) and returns their ids and creation times (which place their images in storage).
   * Used at start for work a previous process left behind.
   */
  async failUnfinished(error: GenerationError, completedAt: Date): Promise<{ id: string; createdAt: Date }[]> {
    const rows = await this.db
      .updateTable('generations')
      .set({
        status: 'failed',
        error_code: error.code,
        error_message: error.message,
        completed_at: toMs(completedAt),
        updated_at: Date.now(),
      })
      .where('status', 'in', UNFINISHED_STATUSES)
      .returning(['id', 'created_at'])
      .execute();
    return rows.map((r) => ({ id: r.id, createdAt: fromMs(r.created_at) }));
  }

  /**
   * Inserts a new queued generation for `client`, unless that client already has `maxActive` queued or
   * running, decided in the same statement (`INSERT … SELECT … WHERE count < max`). Returns whether it
   * was inserted. Exact on SQLite (one writer at a time); on PostgreSQL two instances admitting the
   * same client at the same instant may both pass, at most one generation each over the bound.
   */
  async createIfClientBelow(generation: Generation, client: string, maxActive: number): Promise<boolean> {
    const row = { ...generationRow(generation), client };
    const columns = Object.keys(row) as (keyof typeof row)[];
    const unfinished = sql.join(UNFINISHED_STATUSES.map((status) => sql`${status}`));
    return inTransaction(this.db, async (trx) => {
      const result = await trx
        .insertInto('generations')
        .columns(columns)
        .expression(
          trx
            .selectNoFrom((eb) => columns.map((c) => eb.val(row[c] as never).as(c)))
            .where(sql<boolean>`(select count(*) from generations where client = ${client} and status in (${unfinished})) < ${maxActive}`),
        )
        .executeTakeFirst();
      const inserted = Number(result.numInsertedOrUpdatedRows ?? 0) === 1;
      if (inserted) await indexItem(trx, searchDocument(generation));
      return inserted;
    });
  }

  /** Removes a generation that was never queued (its job could not be enqueued). */
  async deleteQueued(id: string): Promise<void> {
    await inTransaction(this.db, async (trx) => {
      const deleted = await trx.deleteFrom('generations').where('id', '=', id).where('status', '=', 'queued').executeTakeFirst();
      if (Number(deleted.numDeletedRows) > 0) await removeItem(trx, 'generation', id);
    });
  }

  /**
   * The first image job that holds its Gemini slot starts the generation: `queued` → `running` at
   * stage `gemini`, with `startedAt` and the queue time. Returns the record when this call made the
   * change, else null (another image started it first, or it is final).
   */
  async markRunning(generation: Pick<Generation, 'id' | 'createdAt'>, startedAt: Date): Promise<Generation | null> {
    const row = await this.db
      .updateTable('generations')
      .set({
        status: 'running',
        stage: 'gemini',
        started_at: toMs(startedAt),
        timings: JSON.stringify({ ...emptyTimings(), queueMs: Math.max(0, startedAt.getTime() - generation.createdAt.getTime()) }),
        updated_at: Date.now(),
      })
      .where('id', '=', generation.id)
      .where('status', '=', 'queued')
      .returningAll()
      .executeTakeFirst();
    return row ? fromRow(row) : null;
  }

  /**
   * Moves a running generation's stage forward to `stage`, never back (enforced in SQL, so images on
   * different workers cannot undo each other's progress). Returns the record when it changed.
   */
  async advanceStage(id: string, stage: GenerationStage): Promise<Generation | null> {
    const earlier = GENERATION_STAGES.slice(0, GENERATION_STAGES.indexOf(stage));
    if (earlier.length === 0) return null;
    const row = await this.db
      .updateTable('generations')
      .set({ stage, updated_at: Date.now() })
      .where('id', '=', id)
      .where('status', 'in', UNFINISHED_STATUSES)
      .where('stage', 'in', earlier)
      .returningAll()
      .executeTakeFirst();
    return row ? fromRow(row) : null;
  }

  /**
   * Records how one image of a generation ended. The first record of an image stands: a job re-run
   * after a takeover, or a lost-job handler arriving late, cannot overwrite it. Returns the stored one.
   */
  async recordImage(generationId: string, record: ImageRecord): Promise<ImageRecord> {
    const inserted = await this.db
      .insertInto('generation_images')
      .values(toImageRow(generationId, record))
      .onConflict((oc) => oc.columns(['generation_id', 'idx']).doNothing())
      .returningAll()
      .executeTakeFirst();
    if (inserted) return fromImageRow(inserted);
    const stored = await this.db
      .selectFrom('generation_images')
      .selectAll()
      .where('generation_id', '=', generationId)
      .where('idx', '=', record.index)
      .executeTakeFirstOrThrow();
    return fromImageRow(stored);
  }

  /** The recorded images of a generation, by index. */
  async imagesOf(generationId: string): Promise<ImageRecord[]> {
    const rows = await this.db.selectFrom('generation_images').selectAll().where('generation_id', '=', generationId).orderBy('idx').execute();
    return rows.map(fromImageRow);
  }

  /** Unfinished generations created before `before`, oldest first (the reconciler's candidates). */
  async unfinishedBefore(before: Date, limit: number): Promise<Generation[]> {
    const rows = await this.db
      .selectFrom('generations')
      .selectAll()
      .where('status', 'in', UNFINISHED_STATUSES)
      .where('created_at', '<', toMs(before))
      .orderBy('created_at')
      .limit(limit)
      .execute();
    return rows.map(fromRow);
  }

  async countByStatus(): Promise<Record<GenerationStatus, number>> {
    const rows = await this.db
      .selectFrom('generations')
      .select(['status', (eb) => eb.fn.countAll<number>().as('n')])
      .groupBy('status')
      .execute();
    const counts = Object.fromEntries(GENERATION_STATUSES.map((s) => [s, 0])) as Record<GenerationStatus, number>;
    for (const { status, n } of rows) counts[status] = Number(n);
    return counts;
  }

  /** Round trip to the database, for readiness checks; rejects when it cannot answer. */
  async ping(): Promise<void> {
    await sql`select 1`.execute(this.db);
  }
}

export function toMs(date: Date): number {
  const ms = date.getTime();
  if (!Number.isFinite(ms)) throw new TypeError('Invalid Date');
  return ms;
}

function toMsOrNull(date: Date | null): number | null {
  return date === null ? null : toMs(date);
}

/**
 * A millisecond column as a number. node:sqlite gives numbers; node-postgres gives `bigint` as a
 * string unless the pool parses it (ours does, see postgres.ts): both are accepted, and anything
 * that is not an exact integer fails loudly instead of becoming an Invalid Date.
 */
export function fromMs(value: number | string): Date {
  const ms = typeof value === 'string' && /^-?\d+$/.test(value) ? Number(value) : value;
  if (typeof ms !== 'number' || !Number.isSafeInteger(ms)) throw new TypeError(`Not a millisecond timestamp: ${JSON.stringify(value)}`);
  return new Date(ms);
}

function fromMsOrNull(value: number | string | null): Date | null {
  return value === null ? null : fromMs(value);
}

/** A JSON column: text on both dialects today; a `jsonb` column would arrive already parsed. */
export function fromJson<T>(value: unknown): T {
  return (typeof value === 'string' ? JSON.parse(value) : value) as T;
}

/** The row that stores `g` (the bench's bulk loader writes the same rows). */
export function generationRow(g: Generation): Insertable<GenerationsTable> {
  return {
    id: g.id,
    owner: g.owner,
    status: g.status,
    stage: g.stage,
    prompt: g.prompt,
    model: g.model,
    aspect_ratio: g.aspectRatio,
    count: g.count,
    palette_size: g.paletteSize,
    reference_ids: JSON.stringify(g.references),
    palette_hint: g.paletteHint ? 1 : 0,
    created_at: toMs(g.createdAt),
    started_at: toMsOrNull(g.startedAt),
    completed_at: toMsOrNull(g.completedAt),
    timings: JSON.stringify(g.timings),
    images: JSON.stringify(g.images),
    input_tokens: g.usage.inputTokens,
    output_tokens: g.usage.outputTokens,
    error_code: g.error?.code ?? null,
    error_message: g.error?.message ?? null,
    updated_at: Date.now(),
  };
}

function toPatchRow(patch: GenerationPatch): Updateable<GenerationsTable> {
  const row: Updateable<GenerationsTable> = { updated_at: Date.now() };
  if (patch.status !== undefined) row.status = patch.status;
  if (patch.stage !== undefined) row.stage = patch.stage;
  if (patch.startedAt !== undefined) row.started_at = toMsOrNull(patch.startedAt);
  if (patch.completedAt !== undefined) row.completed_at = toMsOrNull(patch.completedAt);
  if (patch.timings !== undefined) row.timings = JSON.stringify(patch.timings);
  if (patch.images !== undefined) row.images = JSON.stringify(patch.images);
  if (patch.usage !== undefined) {
    row.input_tokens = patch.usage.inputTokens;
    row.output_tokens = patch.usage.outputTokens;
  }
  if (patch.error !== undefined) {
    row.error_code = patch.error?.code ?? null;
    row.error_message = patch.error?.message ?? null;
  }
  return row;
}

function fromRow(row: GenerationRow): Generation {
  return {
    id: row.id,
    owner: row.owner,
    status: row.status,
    stage: row.stage,
    prompt: row.prompt,
    model: row.model,
    aspectRatio: row.aspect_ratio,
    count: row.count,
    paletteSize: row.palette_size,
    references: fromJson<string[]>(row.reference_ids ?? '[]'),
    paletteHint: Number(row.palette_hint ?? 0) === 1,
    createdAt: fromMs(row.created_at),
    startedAt: fromMsOrNull(row.started_at),
    completedAt: fromMsOrNull(row.completed_at),
    timings: fromJson<Generation['timings']>(row.timings),
    images: fromJson<Generation['images']>(row.images),
    usage: { inputTokens: row.input_tokens, outputTokens: row.output_tokens },
    error:
      row.error_code === null ? null : { code: row.error_code, message: row.error_message ?? '' },
  };
}

function toImageRow(generationId: string, r: ImageRecord): Insertable<GenerationImagesTable> {
  return {
    generation_id: generationId,
    idx: r.index,
    status: r.image ? 'succeeded' : 'failed',
    storage_key: r.image?.key ?? null,
    mime_type: r.image?.mimeType ?? null,
    width: r.image?.width ?? null,
    height: r.image?.height ?? null,
    bytes: r.image?.bytes ?? null,
    palette: r.image ? JSON.stringify(r.image.palette) : null,
    error_code: r.error?.code ?? null,
    error_message: r.error?.message ?? null,
    gemini_ms: Math.round(r.ms.gemini),
    upload_ms: Math.round(r.ms.upload),
    palette_ms: Math.round(r.ms.palette),
    input_tokens: r.usage.inputTokens,
    output_tokens: r.usage.outputTokens,
    created_at: Date.now(),
  };
}

function fromImageRow(row: ImageRow): ImageRecord {
  const image: GenerationImage | null =
    row.status === 'succeeded' && row.storage_key !== null
      ? {
          index: row.idx,
          key: row.storage_key,
          mimeType: row.mime_type ?? 'application/octet-stream',
          width: Number(row.width ?? 0),
          height: Number(row.height ?? 0),
          bytes: Number(row.bytes ?? 0),
          palette: fromJson(row.palette ?? '[]') as GenerationImage['palette'],
        }
      : null;
  return {
    index: Number(row.idx),
    image,
    error: row.error_code === null ? null : { code: row.error_code, message: row.error_message ?? '' },
    ms: { gemini: Number(row.gemini_ms), upload: Number(row.upload_ms), palette: Number(row.palette_ms) },
    usage: { inputTokens: Number(row.input_tokens), outputTokens: Number(row.output_tokens) },
  };
}
