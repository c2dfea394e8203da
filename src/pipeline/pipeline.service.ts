import { HttpStatus, Injectable, Logger } from '@nestjs/common';
import { setTimeout as sleep } from 'node:timers/promises';
import { AppError } from '../common/app-error';
import {
  Generation,
  GenerationError,
  GenerationInput,
  GenerationErrorCode,
  GenerationImage,
  GenerationStage,
  isFinal,
  newQueuedGeneration,
} from '../common/generation.model';
import { newGenerationId } from '../common/ids';
import { AppConfig } from '../config/app-config';
import { DatabaseUnavailableError } from '../database/database.errors';
import { GenerationNotFoundError, GenerationPatch, GenerationsRepository, Owner } from '../database/generations.repository';
import type { Principal } from '../common/principal';
import { GeminiError } from '../gemini/gemini.errors';
import { GeminiService } from '../gemini/gemini.service';
import { PaletteService } from '../palette/palette.service';
import type { PaletteErrorCode } from '../palette/palette.types';
import { StorageError } from '../storage/storage.errors';
import { StorageService } from '../storage/storage.service';
import { AppMetrics } from '../telemetry/app-metrics';
import { runStage } from '../telemetry/stage';
import { withSpan } from '../telemetry/tracing';
import { PendingFinalWrites } from './final-writes';
import { GenerationEvents } from './generation-events';

export type GenerationRequest = GenerationInput;

/** Why a running job was aborted: the user canceled it, or the process is stopping. */
type AbortReason = 'CANCELED' | 'INTERRUPTED';

interface Job {
  generation: Generation;
  /** The principal's client: fair shares of the queue and of Gemini's slots are counted by it. */
  client: string;
  controller: AbortController;
  /** Set once the first Gemini call of the job holds a semaphore slot. */
  started: boolean;
  done: Promise<void>;
  /** The job's progress writes, one after the other (see advance). */
  progress?: Promise<void>;
}

interface ImageOutcome {
  image?: GenerationImage;
  error?: GenerationError;
  /** Per-stage milliseconds of this image. */
  ms: { gemini: number; upload: number; palette: number };
  usage: { inputTokens: number; outputTokens: number };
}

const STAGE_ORDER: GenerationStage[] = ['queued', 'gemini', 'upload', 'palette', 'done'];
/** Longest wait for removing an image that will not be part of its record. */
const ORPHAN_DELETE_TIMEOUT_MS = 3_000;
/**
 * Pauses between attempts at a final write while the database is busy, full or unreachable (each
 * attempt itself may wait DATABASE_BUSY_TIMEOUT_MS for a lock); after the last, PendingFinalWrites
 * takes over.
 */
const FINAL_WRITE_PAUSES_MS = [100, 300, 1000];
const reason = (error: unknown) => (error instanceof Error ? error.message : String(error));
const ABORT_MESSAGES: Record<AbortReason, string> = {
  CANCELED: 'The generation was canceled',
  INTERRUPTED: 'The service stopped while this generation was in progress',
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
 * Runs generations: queue → Gemini (under GeminiService's semaphore) → upload → palette → persist.
 * Each image of a generation runs its own stages concurrently; one failing image does not cancel the
 * others. Every status/stage change is written to the database as it happens and published to
 * `GenerationEvents`. This class orchestrates only; it imports no third-party SDK.
 */
@Injectable()
export class PipelineService {
  private readonly logger = new Logger(PipelineService.name);
  private readonly jobs = new Map<string, Job>();
  /** Jobs per client, for MAX_ACTIVE_GENERATIONS_PER_CLIENT. */
  private readonly activeByClient = new Map<string, number>();
  private accepting = true;

  constructor(
    private readonly config: AppConfig,
    private readonly repository: GenerationsRepository,
    private readonly gemini: GeminiService,
    private readonly storage: StorageService,
    private readonly palette: PaletteService,
    private readonly events: GenerationEvents,
    private readonly metrics: AppMetrics,
    private readonly finalWrites: PendingFinalWrites,
  ) {
    metrics.gauge('pipeline.queue.depth', 'Generations waiting for their first Gemini slot', () => this.queuedJobs, '{generation}');
    metrics.gauge('pipeline.jobs.active', 'Generations queued or running in this process', () => this.jobs.size, '{generation}');
    metrics.gauge('pipeline.queue.capacity', 'PIPELINE_MAX_QUEUE', () => this.config.pipeline.maxQueue, '{generation}');
  }

  /** Generations accepted but not yet holding a Gemini slot. */
  get queuedJobs(): number {
    let n = 0;
    for (const job of this.jobs.values()) if (!job.started) n++;
    return n;
  }

  get activeJobs(): number {
    return this.jobs.size;
  }

  /**
   * Accepts a generation for `principal`: persists it as `queued`, owned by the principal's owner,
   * and starts it in the background.
   */
  async submit(request: GenerationRequest, principal: Principal): Promise<Generation> {
    if (!this.accepting) {
      throw new AppError(HttpStatus.SERVICE_UNAVAILABLE, 'SHUTTING_DOWN', 'The service is shutting down; retry on another instance', {
        'Retry-After': '5',
      });
    }
    if (this.queuedJobs >= this.config.pipeline.maxQueue) {
      throw new AppError(
        HttpStatus.TOO_MANY_REQUESTS,
        'QUEUE_FULL',
        `Too many generations are waiting (${this.config.pipeline.maxQueue}); retry later`,
        { 'Retry-After': String(this.retryAfterSeconds()) },
      );
    }
    const paletteBacklog = this.palette.stats().waiting;
    if (paletteBacklog > 0) {
      // Colour extraction is the bottleneck: admitted images already wait for the palette queue, and
      // every generation admitted now would add another image (and its memory) to that wait.
      throw new AppError(
        HttpStatus.TOO_MANY_REQUESTS,
        'QUEUE_FULL',
        `Colour extraction is saturated (${paletteBacklog} image(s) wait for the palette queue); retry later`,
        { 'Retry-After': String(this.palette.retryAfterSeconds()) },
      );
    }
    const { client } = principal;
    const active = this.activeByClient.get(client) ?? 0;
    const maxActive = this.config.fairness.maxActivePerClient;
    if (active >= maxActive) {
      // One client must not fill the queue that every client shares.
      throw new AppError(
        HttpStatus.TOO_MANY_REQUESTS,
        'TOO_MANY_ACTIVE_GENERATIONS',
        `You already have ${active} generation(s) queued or running (at most ${maxActive}); wait for one to finish`,
        { 'Retry-After': String(this.retryAfterSeconds()) },
      );
    }
    const generation = newQueuedGeneration(newGenerationId(), this.config.gemini.model, request, { owner: principal.owner });
    await this.repository.create(generation);
    const job: Job = { generation, client, controller: new AbortController(), started: false, done: Promise.resolve() };
    this.jobs.set(generation.id, job);
    this.activeByClient.set(client, active + 1);
    job.done = this.run(job)
      .catch((error: unknown) => this.logger.error(`Generation ${generation.id} crashed: ${String(error)}`, (error as Error)?.stack))
      .finally(() => {
        this.jobs.delete(generation.id);
        const left = (this.activeByClient.get(client) ?? 1) - 1;
        if (left > 0) this.activeByClient.set(client, left);
        else this.activeByClient.delete(client);
      });
    this.events.publish(generation);
    return generation;
  }

  /**
   * Cancels a queued or running generation: aborts its Gemini calls and frees their slots; nothing is
   * uploaded after this. A finished generation → 409.
   */
  async cancel(id: string, owner: Owner): Promise<Generation> {
    // Another owner's generation answers exactly like an unknown one.
    const existing = await this.repository.findById(id, owner);
    if (!existing) throw new GenerationNotFoundError(id);
    const job = this.jobs.get(id);
    if (job) {
      job.controller.abort('CANCELED' satisfies AbortReason);
      await job.done;
      const after = await this.repository.findById(id, owner);
      if (after) return after;
    }
    const canceled = await this.repository.updateIfNotFinal(id, {
      status: 'canceled',
      completedAt: new Date(),
      error: { code: 'CANCELED', message: ABORT_MESSAGES.CANCELED },
    });
    if (canceled) {
      this.events.publish(canceled);
      return canceled;
    }
    const finished = (await this.repository.findById(id, owner)) ?? existing;
    throw new AppError(HttpStatus.CONFLICT, 'GENERATION_FINISHED', `Generation ${id} is already ${finished.status}`);
  }

  /**
   * Stops taking work, lets running generations finish for up to `drainMs`, then aborts the rest and
   * records them as failed/INTERRUPTED. Resolves when every job has written its final state.
   */
  async drain(drainMs = this.config.pipeline.drainMs): Promise<{ drained: number; interrupted: number }> {
    this.accepting = false;
    const pending = [...this.jobs.values()];
    if (pending.length === 0) return { drained: 0, interrupted: 0 };
    this.logger.log(`Draining ${pending.length} generation(s) for up to ${drainMs} ms`);
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<void>((resolve) => (timer = setTimeout(resolve, drainMs)));
    await Promise.race([Promise.allSettled(pending.map((j) => j.done)), timedOut]);
    clearTimeout(timer);
    const left = [...this.jobs.values()];
    for (const job of left) job.controller.abort('INTERRUPTED' satisfies AbortReason);
    await Promise.allSettled(left.map((j) => j.done));
    return { drained: pending.length - left.length, interrupted: left.length };
  }

  get isAccepting(): boolean {
    return this.accepting;
  }

  private retryAfterSeconds(): number {
    // A rough, honest hint: how long the queue ahead takes to clear at current concurrency.
    const perCall = Math.min(this.config.gemini.timeoutMs, 10_000) / 1000;
    return Math.max(1, Math.ceil((this.queuedJobs / this.config.gemini.maxConcurrency) * perCall));
  }

  private async run(job: Job): Promise<void> {
    const { generation } = job;
    await withSpan('pipeline.generation', { 'pipeline.image_count': generation.count, 'gen_ai.request.model': generation.model }, async (span) => {
      const outcomes = await Promise.all(
        Array.from({ length: generation.count }, (_, index) => this.runImage(job, index)),
      );
      const final = await this.finish(job, outcomes);
      span.setAttribute('pipeline.status', final.status);
      if (final.error) span.setAttribute('error.type', final.error.code);
    });
  }

  /**
   * Moves the generation's status/stage forward (never back), persisting and publishing the change.
   * Never rejects: progress is informational, so a failed write is logged and the job goes on (its
   * final write is retried; see persistFinal). A job's progress writes run one after the other and
   * each writes the whole progress as it is when it runs, so one that failed is made good by the
   * next and an older state never lands after a newer one.
   */
  private advance(job: Job, stage: GenerationStage): Promise<void> {
    const g = job.generation;
    if (job.controller.signal.aborted || isFinal(g.status)) return Promise.resolve();
    const patch: Partial<Generation> = {};
    if (g.status === 'queued' && stage !== 'queued') {
      const startedAt = new Date();
      patch.status = 'running';
      patch.startedAt = startedAt;
      patch.timings = { ...g.timings, queueMs: startedAt.getTime() - g.createdAt.getTime() };
      this.metrics.recordStage('queue', 'ok', patch.timings.queueMs / 1000);
    }
    if (STAGE_ORDER.indexOf(stage) > STAGE_ORDER.indexOf(g.stage)) patch.stage = stage;
    if (Object.keys(patch).length === 0) return Promise.resolve();
    Object.assign(g, patch);
    job.progress = (job.progress ?? Promise.resolve()).then(() => this.writeProgress(job));
    return job.progress;
  }

  private async writeProgress(job: Job): Promise<void> {
    const g = job.generation;
    const progress: GenerationPatch = { status: g.status, stage: g.stage, startedAt: g.startedAt, timings: g.timings };
    try {
      // Conditional: once the record is final (finished, canceled), progress no longer lands.
      const updated = await this.repository.updateIfNotFinal(g.id, progress);
      if (updated) this.events.publish(updated);
      this.finalWrites.kick();
    } catch (error) {
      this.logger.warn(`Could not record generation ${g.id} at stage ${progress.stage}: ${reason(error)}`);
    }
  }

  private async runImage(job: Job, index: number): Promise<ImageOutcome> {
    const g = job.generation;
    const signal = job.controller.signal;
    const outcome: ImageOutcome = { ms: { gemini: 0, upload: 0, palette: 0 }, usage: { inputTokens: 0, outputTokens: 0 } };
    const attrs = { 'pipeline.image_index': index };
    /** Set when the upload starts: from then on the store may hold the object. */
    let uploadKey: string | undefined;
    let uploaded = false;
    // The stage in progress and since when, so a stage that fails still reports the time it took
    // (a Gemini timeout shows its full wait in `timings.geminiMs`, not 0).
    let current: keyof ImageOutcome['ms'] = 'gemini';
    let currentStarted = performance.now();
    const enter = (stage: keyof ImageOutcome['ms']) => {
      current = stage;
      currentStarted = performance.now();
    };
    try {
      // The gemini stage is measured from the moment the call holds its semaphore slot: the wait
      // before that is queue time, already in `timings.queueMs` and the `queue` stage.
      const gemini = await runStage(
        this.metrics,
        'gemini',
        attrs,
        () =>
          this.gemini.generateImage(
            { prompt: g.prompt, aspectRatio: g.aspectRatio },
            {
              signal,
              client: job.client,
              onSlotAcquired: () => {
                job.started = true;
                enter('gemini');
                void this.advance(job, 'gemini');
              },
            },
          ),
        () => currentStarted,
      );
      outcome.ms.gemini = gemini.ms;
      outcome.usage = gemini.result.usage;
      const image = gemini.result;
      signal.throwIfAborted();

      await this.advance(job, 'upload');
      const key = this.storage.keyFor(g.id, index, image.mimeType, g.createdAt);
      enter('upload');
      uploadKey = key;
      const upload = await runStage(this.metrics, 'upload', attrs, () => this.storage.put(key, image.data, image.mimeType, { signal }));
      uploaded = true;
      outcome.ms.upload = upload.ms;
      signal.throwIfAborted();

      await this.advance(job, 'palette');
      enter('palette');
      // The Gemini call is paid for: wait for room in a full palette queue rather than fail the image
      // (new generations are refused meanwhile, see submit). The bytes are stored already, so they
      // move to the worker instead of being copied.
      const palette = await runStage(this.metrics, 'palette', attrs, () =>
        this.palette.extract(image.data, g.paletteSize, { signal, waitForRoom: true, transfer: true }),
      );
      outcome.ms.palette = palette.ms;
      signal.throwIfAborted();

      outcome.image = {
        index,
        key,
        mimeType: image.mimeType,
        width: palette.result.width,
        height: palette.result.height,
        bytes: upload.result.bytes,
        palette: palette.result.colors,
      };
    } catch (error) {
      outcome.ms[current] ||= performance.now() - currentStarted;
      outcome.error = this.toGenerationError(error, signal, `Generation ${g.id} image ${index}`);
      // The image will not be part of the record: remove it, so storage holds no orphan. An upload
      // cut short by cancel/shutdown may still have landed, so it is removed too.
      if (uploadKey && (uploaded || signal.aborted)) await this.deleteOrphan(uploadKey);
    }
    return outcome;
  }

  /**
   * Best effort, and bounded: a stalled store must not keep a canceled or interrupted job (and with
   * it the cancel request or the shutdown drain) waiting for the S3 client's own timeouts.
   */
  private async deleteOrphan(key: string): Promise<void> {
    await this.storage
      .delete(key, { signal: AbortSignal.timeout(ORPHAN_DELETE_TIMEOUT_MS) })
      .catch((e: unknown) => this.logger.warn(`Could not delete orphan ${key}: ${String(e)}`));
  }

  /**
   * The record's `error`. Gemini's messages are its own answer (key redacted); everything else gets
   * a fixed text, because what the store or the palette pool threw names absolute paths, endpoints
   * and buckets: that detail goes to the log only (StorageService logs its failures itself).
   */
  private toGenerationError(error: unknown, signal: AbortSignal, where: string): GenerationError {
    if (signal.aborted) {
      const reason: AbortReason = signal.reason === 'INTERRUPTED' ? 'INTERRUPTED' : 'CANCELED';
      return { code: reason, message: ABORT_MESSAGES[reason] };
    }
    if (error instanceof GeminiError) return { code: error.code as GenerationErrorCode, message: error.message };
    const code = (error as { code?: unknown })?.code;
    const detail = error instanceof Error ? error.message : String(error);
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

  private async finish(job: Job, outcomes: ImageOutcome[]): Promise<Generation> {
    const g = job.generation;
    const images = outcomes.flatMap((o) => (o.image ? [o.image] : []));
    const errors = outcomes.flatMap((o) => (o.error ? [o.error] : []));
    const completedAt = new Date();
    const max = (k: keyof ImageOutcome['ms']) => Math.round(Math.max(0, ...outcomes.map((o) => o.ms[k])));
    const timings = {
      queueMs: g.timings.queueMs,
      geminiMs: max('gemini'),
      uploadMs: max('upload'),
      paletteMs: max('palette'),
      totalMs: completedAt.getTime() - g.createdAt.getTime(),
    };
    const usage = outcomes.reduce(
      (sum, o) => ({ inputTokens: sum.inputTokens + o.usage.inputTokens, outputTokens: sum.outputTokens + o.usage.outputTokens }),
      { inputTokens: 0, outputTokens: 0 },
    );
    const aborted = job.controller.signal.aborted;
    let patch: Partial<Generation>;
    if (images.length > 0 && !aborted) {
      // Partial success keeps the images that worked; the failed ones are simply absent.
      patch = { status: 'succeeded', stage: 'done', images, error: null };
    } else {
      const error = errors[0] ?? { code: 'GEMINI_ERROR', message: 'No image was produced' };
      patch = { status: error.code === 'CANCELED' ? 'canceled' : 'failed', images: [], error };
      for (const image of images) await this.deleteOrphan(image.key);
    }
    Object.assign(patch, { timings, usage, completedAt, startedAt: g.startedAt ?? (job.started ? completedAt : null) });
    const final = await this.persistFinal(job, patch);
    Object.assign(g, final);
    this.metrics.recordGenerationFinished(final.status, final.error?.code);
    this.events.publish(final);
    return final;
  }

  /**
   * Writes the final state and returns the record. A database that is busy, full or unreachable is
   * retried a few times (FINAL_WRITE_PAUSES_MS); if the write still fails, PendingFinalWrites keeps
   * trying in the background and the state in memory is returned, so listeners (SSE, `Prefer: wait`)
   * still see the generation end. Any other failure is logged and left to start-up recovery.
   */
  private async persistFinal(job: Job, patch: GenerationPatch): Promise<Generation> {
    const g = job.generation;
    // The stage too, in case the last progress write did not land: the record shows where it ended.
    const write: GenerationPatch = { stage: g.stage, ...patch };
    const inMemory: Generation = { ...g, ...write };
    for (let attempt = 0; ; attempt++) {
      try {
        const written = await this.repository.updateIfNotFinal(g.id, write);
        this.finalWrites.kick();
        // null: finished meanwhile by someone else (a cancel); that state stands.
        return written ?? (await this.repository.findById(g.id, g.owner).catch(() => null)) ?? inMemory;
      } catch (error) {
        const transient = error instanceof DatabaseUnavailableError && error.transient;
        if (transient && attempt < FINAL_WRITE_PAUSES_MS.length) {
          await sleep(FINAL_WRITE_PAUSES_MS[attempt]);
          continue;
        }
        if (transient) {
          this.logger.error(`Could not record the final state of generation ${g.id} (${reason(error)}); retrying in the background`);
          this.finalWrites.add(inMemory, write);
        } else {
          this.logger.error(`Could not record the final state of generation ${g.id}: ${reason(error)}`, (error as Error)?.stack);
        }
        return inMemory;
      }
    }
  }
}
