import { HttpStatus, Inject, Injectable, Logger } from '@nestjs/common';
import { AppError } from '../common/app-error';
import { Generation, GenerationInput, newQueuedGeneration } from '../common/generation.model';
import { newGenerationId } from '../common/ids';
import type { Principal } from '../common/principal';
import { AppConfig } from '../config/app-config';
import { GenerationNotFoundError, GenerationsRepository, Owner } from '../database/generations.repository';
import { ReferencesRepository } from '../database/references.repository';
import { PaletteService } from '../palette/palette.service';
import { LoadShedder } from '../overload/load-shedder';
import { AppMetrics } from '../telemetry/app-metrics';
import { GenerationEvents } from './generation-events';
import { ABORT_MESSAGES } from './generation-runner';
import { JobQueue, QueueUnavailableError } from './job-queue';
import { observeJobQueue } from './queue-metrics';

export type GenerationRequest = GenerationInput;

/**
 * The API side of the pipeline: admits generations (bounded queue, fair shares per client), queues
 * one job per image, cancels, and stops taking work on shutdown. Which queue runs the jobs (this
 * process, or any worker through Redis) is the JobQueue's business; GenerationRunner runs them. This
 * class orchestrates only; it imports no third-party SDK.
 */
@Injectable()
export class PipelineService {
  private readonly logger = new Logger(PipelineService.name);
  private accepting = true;
  /** Admissions between their checks and their jobs being queued (keeps a burst from overshooting). */
  private admitting = 0;

  constructor(
    private readonly config: AppConfig,
    private readonly repository: GenerationsRepository,
    private readonly references: ReferencesRepository,
    private readonly palette: PaletteService,
    private readonly events: GenerationEvents,
    @Inject(JobQueue) private readonly queue: JobQueue,
    private readonly shedder: LoadShedder,
    metrics: AppMetrics,
  ) {
    observeJobQueue(metrics, queue, config.pipeline.maxQueue);
  }

  get isAccepting(): boolean {
    return this.accepting;
  }

  /**
   * Accepts a generation for `principal`: persists it `queued`, owned by the principal's owner and
   * counted against its client, and queues one job per image. Refusals: 503 while shutting down or
   * when the queue is unreachable, 429 when the queue is full, colour extraction is saturated, or the
   * client has its share of active generations.
   */
  async submit(request: GenerationRequest, principal: Principal): Promise<Generation> {
    if (!this.accepting) {
      throw new AppError(HttpStatus.SERVICE_UNAVAILABLE, 'SHUTTING_DOWN', 'The service is shutting down; retry on another instance', {
        'Retry-After': '5',
      });
    }
    // Cheapest refusal first: a saturated instance does no work for a request it will not take.
    this.shedder.assertAccepting('generation');
    this.admitting += request.count;
    try {
      await this.checkReferences(request, principal.owner);
      await this.checkRoom();
      const generation = newQueuedGeneration(newGenerationId(), this.config.gemini.model, request, { owner: principal.owner });
      const maxActive = this.config.fairness.maxActivePerClient;
      if (!(await this.repository.createIfClientBelow(generation, principal.client, maxActive))) {
        // One client must not fill the queue that every client shares.
        throw new AppError(
          HttpStatus.TOO_MANY_REQUESTS,
          'TOO_MANY_ACTIVE_GENERATIONS',
          `You already have ${maxActive} generation(s) queued or running (at most ${maxActive}); wait for one to finish`,
          { 'Retry-After': String(await this.retryAfterSeconds()) },
        );
      }
      const jobs = Array.from({ length: generation.count }, (_, index) => ({
        generationId: generation.id,
        index,
        owner: generation.owner,
        client: principal.client,
      }));
      try {
        await this.queue.enqueue(jobs);
      } catch (error) {
        // Nothing will run it: the record goes too, so no generation stays queued forever.
        await this.repository.deleteQueued(generation.id).catch((e: unknown) => this.logger.error(`Could not remove generation ${generation.id}: ${String(e)}`));
        if (error instanceof QueueUnavailableError) {
          this.logger.warn(`Could not queue generation ${generation.id}: ${error.detail}`);
          throw new AppError(HttpStatus.SERVICE_UNAVAILABLE, 'QUEUE_UNAVAILABLE', 'The job queue is unavailable; retry shortly', { 'Retry-After': '5' });
        }
        throw error;
      }
      this.events.publish(generation);
      return generation;
    } finally {
      this.admitting -= request.count;
    }
  }

  /**
   * Cancels a queued or running generation: records it canceled, then aborts its jobs wherever they
   * run (their Gemini calls with them); nothing is uploaded after this. Another owner's or an unknown
   * id → 404; a finished generation → 409.
   */
  async cancel(id: string, owner: Owner): Promise<Generation> {
    const existing = await this.repository.findById(id, owner);
    if (!existing) throw new GenerationNotFoundError(id);
    const completedAt = new Date();
    const canceled = await this.repository.updateIfNotFinal(id, {
      status: 'canceled',
      completedAt,
      timings: { ...existing.timings, totalMs: completedAt.getTime() - existing.createdAt.getTime() },
      error: { code: 'CANCELED', message: ABORT_MESSAGES.CANCELED },
    });
    if (!canceled) {
      const finished = (await this.repository.findById(id, owner)) ?? existing;
      throw new AppError(HttpStatus.CONFLICT, 'GENERATION_FINISHED', `Generation ${id} is already ${finished.status}`);
    }
    this.events.publish(canceled);
    await this.queue.cancel(canceled);
    return canceled;
  }

  /** Stops admitting; the queue drains its running jobs (see JobQueue.drain). */
  async drain(drainMs = this.config.pipeline.drainMs): Promise<{ finished: number; aborted: number }> {
    this.accepting = false;
    return this.queue.drain(drainMs);
  }

  /** Every reference must be one of the owner's (unknown and foreign ids alike: 400). */
  private async checkReferences(request: GenerationRequest, owner: Owner): Promise<void> {
    const ids = [...new Set(request.references ?? [])];
    if (request.paletteHint && ids.length === 0) {
      throw new AppError(HttpStatus.BAD_REQUEST, 'VALIDATION_FAILED', 'paletteHint needs references: it appends their palettes to the prompt');
    }
    if (ids.length === 0) return;
    const found = new Set((await this.references.findOwned(ids, owner)).map((r) => r.id));
    const missing = ids.filter((id) => !found.has(id));
    if (missing.length > 0) {
      throw new AppError(HttpStatus.BAD_REQUEST, 'UNKNOWN_REFERENCE', `No reference with id ${missing.join(', ')} in your library`);
    }
  }

  private async checkRoom(): Promise<void> {
    let waiting: number;
    try {
      waiting = await this.queue.waiting();
    } catch (error) {
      this.logger.warn(`Could not read the queue's depth: ${String(error)}`);
      throw new AppError(HttpStatus.SERVICE_UNAVAILABLE, 'QUEUE_UNAVAILABLE', 'The job queue is unavailable; retry shortly', { 'Retry-After': '5' });
    }
    // Admissions in flight count too: concurrent requests cannot all pass the same check.
    if (waiting + this.admitting > this.config.pipeline.maxQueue) {
      throw new AppError(
        HttpStatus.TOO_MANY_REQUESTS,
        'QUEUE_FULL',
        `Too many generations are waiting (${this.config.pipeline.maxQueue}); retry later`,
        { 'Retry-After': String(await this.retryAfterSeconds(waiting)) },
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
  }

  private async retryAfterSeconds(waiting?: number): Promise<number> {
    // A rough, honest hint: how long the queue ahead takes to clear at the Gemini concurrency.
    const ahead = waiting ?? (await this.queue.waiting().catch(() => 0));
    const perCall = Math.min(this.config.gemini.timeoutMs, 10_000) / 1000;
    return Math.max(1, Math.ceil((ahead / this.config.gemini.maxConcurrency) * perCall));
  }
}
