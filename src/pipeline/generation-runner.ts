import { Inject, Injectable, Logger, OnApplicationBootstrap } from '@nestjs/common';
import { Span, SpanStatusCode } from '@opentelemetry/api';
import { sleep } from '../common/sleep';
import { Generation, GenerationError, GenerationErrorCode, GenerationStage, isFinal } from '../common/generation.model';
import { DatabaseUnavailableError } from '../database/database.errors';
import { GenerationsRepository, ImageRecord } from '../database/generations.repository';
import { GeminiError } from '../gemini/gemini.errors';
import { GeminiService } from '../gemini/gemini.service';
import type { PaletteErrorCode } from '../palette/palette.errors';
import { PaletteService } from '../palette/palette.service';
import { StorageError } from '../storage/storage.errors';
import { StorageService } from '../storage/storage.service';
import { AppMetrics } from '../telemetry/app-metrics';
import { runStage } from '../telemetry/stage';
import { withSpan } from '../telemetry/tracing';
import { PendingFinalWrites } from './final-writes';
import { promptWithPaletteHint, ReferenceImages } from './reference-images';
import { finalPatch } from './final-state';
import { GenerationEvents } from './generation-events';
import { AbortReason, ImageJob, JobContext, JobQueue } from './job-queue';

/** Longest wait for removing an image that will not be part of its record. */
const ORPHAN_DELETE_TIMEOUT_MS = 3_000;
/**
 * Pauses between attempts at an image's last writes while the database is busy, full or unreachable
 * (each attempt may itself wait DATABASE_BUSY_TIMEOUT_MS for a lock). After the last, the in-process
 * queue hands them to PendingFinalWrites; on BullMQ the job fails and runs again later.
 */
const FINAL_WRITE_PAUSES_MS = [100, 300, 1000];
const reason = (error: unknown) => (error instanceof Error ? error.message : String(error));

export const ABORT_MESSAGES: Record<Exclude<AbortReason, 'HANDED_BACK'>, string> = {
  CANCELED: 'The generation was canceled',
  INTERRUPTED: 'The service stopped while this generation was in progress',
};
/** What a job that the queue gave up on (it kept killing its workers, or it was lost) records. */
export const LOST_JOB_ERROR: GenerationError = {
  code: 'INTERRUPTED',
  message: 'The worker running this generation stopped, and the generation could not be finished',
};
/** What an image records when its job could not even read its generation (in-process only). */
const DATABASE_DOWN_ERROR: GenerationError = {
  code: 'INTERRUPTED',
  message: 'The database was unavailable when this image should have started',
};
/** Fixed texts a record carries when storage or the pipeline itself failed (details: server log). */
const STORED_ERROR_MESSAGES = {
  STORAGE_ERROR: 'The image could not be stored',
  UNEXPECTED: 'The generation failed because of an internal error',
};
const PALETTE_ERROR_MESSAGES: Record<PaletteErrorCode, string> = {
  UNSUPPORTED_IMAGE: 'The generated image could not be decoded to extract its colours',
  IMAGE_TOO_LARGE: 'The generated image is too large to extract its colours',
  PALETTE_BUSY: 'Colour extraction was too busy; the image was dropped',
  PALETTE_TIMEOUT: 'Colour extraction took too long; the image was dropped',
  PALETTE_ERROR: 'The colours of the image could not be extracted',
};

/**
 * A failed image's `pipeline.image` span: `error.type`, and status ERROR so that the trace shows the
 * failure; not for a cancel, which is the client's decision rather than a fault.
 */
function markFailed(span: Span, error: GenerationError): void {
  span.setAttribute('error.type', error.code);
  if (error.code !== 'CANCELED') span.setStatus({ code: SpanStatusCode.ERROR, message: error.code });
}

/** The job stopped because its worker hands it back to the queue (SIGTERM); another worker finishes it. */
export class JobHandedBack extends Error {
  constructor() {
    super('handed back to the queue');
    this.name = 'JobHandedBack';
  }
}

type StageMs = ImageRecord['ms'];

/** What a job knows of its generation as it runs: the latest row its own writes returned. */
interface Progress {
  latest: Generation;
  /** True when this job's markRunning started the generation (so `latest` is the current row). */
  started: boolean;
}

/** A generation and all its image records, when the caller already has them current. */
interface KnownState {
  generation: Generation;
  records: ImageRecord[];
}

/**
 * The worker side of the pipeline: runs one image job (Gemini → upload → palette), records how the
 * image ended, and when it was the generation's last image, writes the generation's final state.
 * The database is the truth and every write is conditional (stages never go back, the first record
 * of an image stands, a final state is written once), so a job run again after a takeover, or two
 * workers finishing the last two images at once, cannot corrupt a record. Orchestrates only: no SDK.
 */
@Injectable()
export class GenerationRunner implements OnApplicationBootstrap {
  private readonly logger = new Logger(GenerationRunner.name);

  constructor(
    private readonly repository: GenerationsRepository,
    private readonly gemini: GeminiService,
    private readonly storage: StorageService,
    private readonly palette: PaletteService,
    private readonly events: GenerationEvents,
    private readonly metrics: AppMetrics,
    private readonly finalWrites: PendingFinalWrites,
    private readonly references: ReferenceImages,
    @Inject(JobQueue) private readonly queue: JobQueue,
  ) {}

  /** Starts this process's worker: from now on it runs jobs. */
  async onApplicationBootstrap(): Promise<void> {
    await this.queue.startWorker(
      (job, context) => this.run(job, context),
      (job, why) => this.recordLost(job, why),
    );
  }

  /** Runs one image job to its record; throws JobHandedBack, or a database error on BullMQ (it retries). */
  async run(job: ImageJob, context: JobContext): Promise<void> {
    await withSpan('pipeline.image', { 'pipeline.image_index': job.index, 'pipeline.takeovers': context.takeovers }, async (span) => {
      const generation = await this.withDatabaseRetries(() => this.repository.findById(job.generationId, job.owner)).catch((error: unknown) => {
        if (this.queue.kind === 'bullmq') throw error;
        // In-process nothing would run this job again: record the image failed, in the background.
        this.logger.error(`Generation ${job.generationId} image ${job.index}: the database is unavailable (${reason(error)})`);
        const record: ImageRecord = { index: job.index, image: null, error: DATABASE_DOWN_ERROR, ms: { gemini: 0, upload: 0, palette: 0 }, usage: { inputTokens: 0, outputTokens: 0 } };
        this.finalWrites.addWrite(`${job.generationId}/${job.index}`, null, async () => {
          await this.repository.recordImage(job.generationId, record);
          return (await this.finalize(job.generationId, job.owner)) ?? undefined;
        });
        return undefined;
      });
      if (generation === undefined) {
        markFailed(span, DATABASE_DOWN_ERROR);
        context.started();
        return;
      }
      if (!generation) {
        this.logger.warn(`Job ${job.generationId}/${job.index}: no such generation (deleted?); dropped`);
        return;
      }
      span.setAttribute('gen_ai.request.model', generation.model);
      if (isFinal(generation.status)) {
        // Canceled while it waited: nothing to do (a cancel finalizes the record itself).
        context.started();
        return;
      }
      // A job that ran before may have recorded its image already (its last write failed, say).
      const recorded = context.firstRun
        ? undefined
        : (await this.withDatabaseRetries(() => this.repository.imagesOf(generation.id))).find((r) => r.index === job.index);
      const progress: Progress = { latest: generation, started: false };
      const record = recorded ?? (await this.runImage(generation, job, context, progress));
      if (record.error) markFailed(span, record.error);
      if (context.signal.reason === 'CANCELED') return;
      // A one-image generation that this job started: its record is the only one, and the row
      // markRunning returned is current, so finalizing needs no read back.
      const known = progress.started && generation.count === 1 ? { generation: progress.latest, records: [record] } : undefined;
      await this.complete(generation, record, known);
    });
  }

  /** A job the queue gave up on: its image is recorded INTERRUPTED, and the generation finalized. */
  async recordLost(job: ImageJob, why: string): Promise<void> {
    this.logger.error(`Generation ${job.generationId} image ${job.index} was lost (${why}); recording it INTERRUPTED`);
    const generation = await this.repository.findById(job.generationId, job.owner);
    if (!generation || isFinal(generation.status)) return;
    const record: ImageRecord = { index: job.index, image: null, error: LOST_JOB_ERROR, ms: { gemini: 0, upload: 0, palette: 0 }, usage: { inputTokens: 0, outputTokens: 0 } };
    await this.repository.recordImage(generation.id, record);
    await this.finalize(generation.id, generation.owner);
  }

  /**
   * Records the image and, if it was the last one, the generation's final state; retried while the
   * database is busy or away. If it still fails: on BullMQ the job fails and runs again (its record is
   * found then); in-process the write continues in the background and listeners get the final state
   * now when it can be known without the database (a one-image generation).
   */
  private async complete(generation: Generation, record: ImageRecord, known?: KnownState): Promise<void> {
    // finalize() deletes what no record references itself: nothing is left for PendingFinalWrites to delete.
    let first = true;
    const write = async () => {
      await this.repository.recordImage(generation.id, record);
      // Only the first try may trust what this job knew; a retry later reads the database.
      const state = first ? known : undefined;
      first = false;
      return (await this.finalize(generation.id, generation.owner, state)) ?? undefined;
    };
    try {
      await this.withDatabaseRetries(write);
      this.finalWrites.kick();
    } catch (error) {
      if (this.queue.kind === 'bullmq') throw error;
      const provisional = generation.count === 1 ? ({ ...generation, ...finalPatch(generation, [record], new Date()) } as Generation) : null;
      this.logger.error(`Could not record generation ${generation.id} image ${record.index} (${reason(error)}); retrying in the background`);
      if (provisional) this.events.publish(provisional);
      this.finalWrites.addWrite(`${generation.id}/${record.index}`, provisional, write);
    }
  }

  /** `fn`, tried again after 100, 300 and 1000 ms while the database is busy, full or away. */
  private async withDatabaseRetries<T>(fn: () => Promise<T>): Promise<T> {
    for (let attempt = 0; ; attempt++) {
      try {
        return await fn();
      } catch (error) {
        const transient = error instanceof DatabaseUnavailableError && error.transient;
        if (!transient || attempt >= FINAL_WRITE_PAUSES_MS.length) throw error;
        await sleep(FINAL_WRITE_PAUSES_MS[attempt]);
      }
    }
  }

  /**
   * Writes the generation's final state once every image is recorded; returns it, or null while
   * images are still running (or when the record was final already). Objects of images that are not
   * part of the final record (it failed, or was canceled meanwhile) are deleted.
   */
  async finalize(id: string, owner: string | null, known?: KnownState): Promise<Generation | null> {
    const generation = known?.generation ?? (await this.repository.findById(id, owner));
    if (!generation) return null;
    const records = known?.records ?? (await this.repository.imagesOf(id));
    if (isFinal(generation.status)) {
      await this.deleteUnreferenced(generation, records);
      return null;
    }
    if (records.length < generation.count) return null;
    const patch = finalPatch(generation, records, new Date());
    const final = await this.repository.updateIfNotFinal(id, patch);
    if (!final) {
      // Someone else wrote it first (a cancel, or the worker of another image): theirs stands.
      const current = await this.repository.findById(id, owner);
      if (current) await this.deleteUnreferenced(current, records);
      return null;
    }
    this.metrics.recordGenerationFinished(final.status, final.error?.code);
    if (final.status === 'failed') this.logger.warn(`Generation ${id} failed: ${final.error?.code}`);
    this.events.publish(final);
    await this.deleteUnreferenced(final, records);
    return final;
  }

  private async runImage(generation: Generation, job: ImageJob, context: JobContext, state: Progress): Promise<ImageRecord> {
    const { signal } = context;
    const index = job.index;
    const record: ImageRecord = { index, image: null, error: null, ms: { gemini: 0, upload: 0, palette: 0 }, usage: { inputTokens: 0, outputTokens: 0 } };
    const attrs = { 'pipeline.image_index': index };
    let uploadKey: string | undefined;
    let uploaded = false;
    // The stage in progress and since when, so a stage that fails still reports the time it took
    // (a Gemini timeout shows its full wait in `timings.geminiMs`, not 0).
    let current: keyof StageMs = 'gemini';
    let currentStarted = performance.now();
    const enter = (stage: keyof StageMs) => {
      current = stage;
      currentStarted = performance.now();
    };
    // Progress writes of this job, in order; each is informational and never fails the job.
    let progress = Promise.resolve();
    const advance = (stage: GenerationStage, start = false) => {
      progress = progress.then(() => this.writeProgress(generation, stage, start, state));
      return progress;
    };
    try {
      // The gemini stage is measured from the moment the call holds its quota slot: the wait before
      // that is queue time, in `timings.queueMs` and the `queue` stage.
      // The references go to Gemini beside the prompt (and their palettes into it, with paletteHint).
      const references = await this.references.load(generation);
      const images = await Promise.all(references.map((r) => this.references.forModel(r)));
      const prompt = generation.paletteHint ? promptWithPaletteHint(generation.prompt, references) : generation.prompt;
      const gemini = await runStage(
        this.metrics,
        'gemini',
        attrs,
        () =>
          this.gemini.generateImage(
            { prompt, aspectRatio: generation.aspectRatio, images },
            {
              signal,
              client: job.client,
              onSlotAcquired: () => {
                context.started();
                enter('gemini');
                void advance('gemini', true);
              },
            },
          ),
        () => currentStarted,
      );
      record.ms.gemini = gemini.ms;
      record.usage = gemini.result.usage;
      const image = gemini.result;
      signal.throwIfAborted();

      await advance('upload');
      const key = this.storage.keyFor(generation.id, index, image.mimeType, generation.createdAt);
      enter('upload');
      uploadKey = key;
      const upload = await runStage(this.metrics, 'upload', attrs, () => this.storage.put(key, image.data, image.mimeType, { signal }));
      uploaded = true;
      record.ms.upload = upload.ms;
      signal.throwIfAborted();

      await advance('palette');
      enter('palette');
      // The Gemini call is paid for: wait for room in a full palette queue rather than fail the image
      // (new generations are refused meanwhile). The bytes are stored already, so they move to the
      // worker instead of being copied.
      const palette = await runStage(this.metrics, 'palette', attrs, () =>
        this.palette.extract(image.data, generation.paletteSize, { signal, waitForRoom: true, transfer: true }),
      );
      record.ms.palette = palette.ms;
      signal.throwIfAborted();

      record.image = {
        index,
        key,
        mimeType: image.mimeType,
        width: palette.result.width,
        height: palette.result.height,
        bytes: upload.result.bytes,
        palette: palette.result.colors,
      };
    } catch (error) {
      record.ms[current] ||= performance.now() - currentStarted;
      if (signal.reason === 'HANDED_BACK') {
        if (uploadKey) await this.deleteOrphan(uploadKey);
        await progress;
        throw new JobHandedBack();
      }
      record.error = this.toGenerationError(error, signal, `Generation ${generation.id} image ${index}`);
      // The image will not be part of the record: remove it, so storage holds no orphan. An upload
      // cut short by cancel/shutdown may still have landed, so it is removed too.
      if (uploadKey && (uploaded || signal.aborted)) await this.deleteOrphan(uploadKey);
    }
    await progress;
    return record;
  }

  /** Moves the generation forward (never back) and tells listeners; logs and goes on when it cannot. */
  private async writeProgress(generation: Generation, stage: GenerationStage, start: boolean, state: Progress): Promise<void> {
    try {
      if (start) {
        // queued → running at stage gemini, in one statement, when this image is the first to start.
        const started = await this.repository.markRunning(generation, new Date());
        if (started) {
          state.latest = started;
          state.started = true;
          this.metrics.recordStage('queue', 'ok', started.timings.queueMs / 1000);
          this.events.publish(started);
          this.finalWrites.kick();
          return;
        }
      }
      const moved = await this.repository.advanceStage(generation.id, stage);
      if (moved) {
        state.latest = moved;
        this.events.publish(moved);
      }
      this.finalWrites.kick();
    } catch (error) {
      this.logger.warn(`Could not record generation ${generation.id} at stage ${stage}: ${reason(error)}`);
    }
  }

  /** Deletes stored images of `records` that `generation` (final) does not reference. */
  private async deleteUnreferenced(generation: Generation, records: ImageRecord[]): Promise<void> {
    const kept = new Set(generation.images.map((i) => i.key));
    for (const r of records) if (r.image && !kept.has(r.image.key)) await this.deleteOrphan(r.image.key);
  }

  /**
   * Best effort, and bounded: a stalled store must not keep a canceled or interrupted job (and with it
   * the cancel request or the shutdown drain) waiting for the S3 client's own timeouts.
   */
  private async deleteOrphan(key: string): Promise<void> {
    await this.storage
      .delete(key, { signal: AbortSignal.timeout(ORPHAN_DELETE_TIMEOUT_MS) })
      .catch((e: unknown) => this.logger.warn(`Could not delete orphan ${key}: ${reason(e)}`));
  }

  private toGenerationError(error: unknown, signal: AbortSignal, where: string): GenerationError {
    if (signal.aborted) {
      const why = signal.reason === 'INTERRUPTED' ? 'INTERRUPTED' : 'CANCELED';
      return { code: why, message: ABORT_MESSAGES[why] };
    }
    if (error instanceof GeminiError) {
      // The call's final failure (retries done, or not retryable), or a blocked prompt: the record
      // says it to the client; this says it to the operator (the prompt itself is never logged).
      const attempts = error.attempts ? ` after ${error.attempts} attempt${error.attempts > 1 ? 's' : ''}` : '';
      const line = `${where} failed${attempts}: ${error.code}: ${error.message}`;
      if (error.code === 'GEMINI_BLOCKED' || error.code === 'GEMINI_NO_IMAGE') this.logger.warn(line);
      else this.logger.error(line);
      return { code: error.code as GenerationErrorCode, message: error.message };
    }
    const code = (error as { code?: unknown })?.code;
    const detail = reason(error);
    if (error instanceof StorageError) {
      this.logger.warn(`${where} failed: ${error.code}`);
      return { code: 'STORAGE_ERROR', message: STORED_ERROR_MESSAGES.STORAGE_ERROR };
    }
    if (typeof code === 'string' && Object.hasOwn(PALETTE_ERROR_MESSAGES, code)) {
      this.logger.warn(`${where} failed: ${code}: ${detail}`);
      return { code: 'PALETTE_ERROR', message: PALETTE_ERROR_MESSAGES[code as PaletteErrorCode] };
    }
    this.logger.error(`${where}: unexpected pipeline error: ${detail}`, (error as Error)?.stack);
    return { code: 'GEMINI_ERROR', message: STORED_ERROR_MESSAGES.UNEXPECTED };
  }
}
