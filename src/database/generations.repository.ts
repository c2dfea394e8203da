import { Inject, Injectable } from '@nestjs/common';
import { Insertable, Selectable, sql, Updateable } from 'kysely';
import {
  FINAL_STATUSES,
  Generation,
  GENERATION_STATUSES,
  GenerationError,
  GenerationStatus,
} from '../common/generation.model';
import { Database, KYSELY } from './database';
import { GenerationNotFoundError } from './database.errors';
import type { GenerationsTable } from './database.schema';
import { decodeCursor, encodeCursor } from './generation-cursor';

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

/**
 * Generations in the database, as the `Generation` domain type. Every write is one SQL statement,
 * so a crash can never leave a half-written record; the conditional writes (`updateIfNotFinal`,
 * `failUnfinished`) decide and write in that same statement, so they cannot race with each other.
 */
@Injectable()
export class GenerationsRepository {
  constructor(@Inject(KYSELY) private readonly db: Database) {}

  async create(generation: Generation): Promise<void> {
    await this.db.insertInto('generations').values(toRow(generation)).execute();
  }

  async findById(id: string): Promise<Generation | null> {
    const row = await this.db.selectFrom('generations').selectAll().where('id', '=', id).executeTakeFirst();
    return row ? fromRow(row) : null;
  }

  /**
   * Newest first by (createdAt, id). Keyset paging: a page costs the same however deep it is, and
   * rows inserted meanwhile neither repeat nor shift later pages. Throws `InvalidCursorError` for a
   * cursor this method did not issue.
   */
  async list({ limit, cursor }: { limit: number; cursor?: string }): Promise<GenerationPage> {
    if (!Number.isInteger(limit) || limit < 1 || limit > MAX_PAGE_SIZE) {
      throw new RangeError(`limit must be an integer in 1..${MAX_PAGE_SIZE}, got ${limit}`);
    }
    let query = this.db
      .selectFrom('generations')
      .selectAll()
      .orderBy('created_at', 'desc')
      .orderBy('id', 'desc')
      .limit(limit + 1);
    if (cursor !== undefined) {
      const after = decodeCursor(cursor);
      query = query.where(({ eb, refTuple, tuple }) =>
        eb(refTuple('created_at', 'id'), '<', tuple(after.createdAt, after.id)),
      );
    }
    const rows = await query.execute();
    const items = rows.slice(0, limit).map(fromRow);
    const last = items.at(-1);
    const nextCursor =
      rows.length > limit && last ? encodeCursor({ createdAt: last.createdAt.getTime(), id: last.id }) : null;
    return { items, nextCursor };
  }

  /** Applies `patch` and returns the updated generation; throws `GenerationNotFoundError`. */
  async update(id: string, patch: GenerationPatch): Promise<Generation> {
    const row = await this.db
      .updateTable('generations')
      .set(toPatchRow(patch))
      .where('id', '=', id)
      .returningAll()
      .executeTakeFirst();
    if (!row) throw new GenerationNotFoundError(id);
    return fromRow(row);
  }

  /**
   * Applies `patch` only while the generation is still queued or running, in one statement, so
   * a cancel and the pipeline finishing at the same moment cannot both win. Returns null when it
   * was already final; throws `GenerationNotFoundError` when there is no such generation.
   */
  async updateIfNotFinal(id: string, patch: GenerationPatch): Promise<Generation | null> {
    const row = await this.db
      .updateTable('generations')
      .set(toPatchRow(patch))
      .where('id', '=', id)
      .where('status', 'in', UNFINISHED_STATUSES)
      .returningAll()
      .executeTakeFirst();
    if (row) return fromRow(row);
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
    return rows.map((r) => ({ id: r.id, createdAt: new Date(r.created_at) }));
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

function toMs(date: Date): number {
  const ms = date.getTime();
  if (!Number.isFinite(ms)) throw new TypeError('Invalid Date');
  return ms;
}

function toMsOrNull(date: Date | null): number | null {
  return date === null ? null : toMs(date);
}

function fromMsOrNull(ms: number | null): Date | null {
  return ms === null ? null : new Date(ms);
}

function toRow(g: Generation): Insertable<GenerationsTable> {
  return {
    id: g.id,
    status: g.status,
    stage: g.stage,
    prompt: g.prompt,
    model: g.model,
    aspect_ratio: g.aspectRatio,
    count: g.count,
    palette_size: g.paletteSize,
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
    status: row.status,
    stage: row.stage,
    prompt: row.prompt,
    model: row.model,
    aspectRatio: row.aspect_ratio,
    count: row.count,
    paletteSize: row.palette_size,
    createdAt: new Date(row.created_at),
    startedAt: fromMsOrNull(row.started_at),
    completedAt: fromMsOrNull(row.completed_at),
    timings: JSON.parse(row.timings) as Generation['timings'],
    images: JSON.parse(row.images) as Generation['images'],
    usage: { inputTokens: row.input_tokens, outputTokens: row.output_tokens },
    error:
      row.error_code === null ? null : { code: row.error_code, message: row.error_message ?? '' },
  };
}
