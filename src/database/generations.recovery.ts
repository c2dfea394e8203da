import { Injectable, Logger, OnApplicationBootstrap } from '@nestjs/common';
import { setTimeout as sleep } from 'node:timers/promises';
import type { GenerationError } from '../common/generation.model';
import { DatabaseCorruptError, DatabaseUnavailableError } from './database.errors';
import { AppConfig } from '../config/app-config';
import { GenerationsRepository } from './generations.repository';

export const INTERRUPTED_ERROR: GenerationError = {
  code: 'INTERRUPTED',
  message: 'The service stopped while this generation was in progress',
};

/** A generation start-up recovery marked INTERRUPTED; `createdAt` places its images in storage. */
export interface RecoveredGeneration {
  id: string;
  createdAt: Date;
}

/** Pauses before retrying recovery while the database is busy, full or unreadable (≈ 8 s in all). */
const RETRY_PAUSES_MS = [250, 500, 1000, 2000, 4000];

/**
 * Embedded deployment only (in-process queue). Jobs live in memory, so a generation still queued or running when the process starts belongs to
 * a process that died or was killed mid-work (or whose final write never reached the database):
 * nothing will ever finish it. Failing it at bootstrap (before the HTTP server listens) gives
 * clients a final state instead of a record stuck forever; `atStart` then tells the image sweep
 * (OrphanSweep) whose images to remove.
 *
 * A busy, full or unreadable database is retried for a few seconds, then the start fails. A
 * damaged file does not stop the start: readiness already answers 503 (DatabaseHealth), and the
 * intact part of the history stays readable.
 */
@Injectable()
export class GenerationsRecovery implements OnApplicationBootstrap {
  private readonly logger = new Logger(GenerationsRecovery.name);
  private settleAtStart!: (recovered: RecoveredGeneration[]) => void;
  /** What the bootstrap run marked INTERRUPTED; empty when it could not run. */
  readonly atStart = new Promise<RecoveredGeneration[]>((resolve) => (this.settleAtStart = resolve));

  constructor(
    private readonly generations: GenerationsRepository,
    private readonly config: AppConfig,
  ) {}

  async onApplicationBootstrap(): Promise<void> {
    let recovered: RecoveredGeneration[] = [];
    if (this.config.distributed) {
      // Other instances' workers may be running these right now: a job whose worker died is taken
      // over by the queue, and one the queue lost is found by LostJobReconciler. Nothing to do here.
      this.settleAtStart(recovered);
      return;
    }
    try {
      recovered = await this.recoverPatiently();
    } catch (error) {
      if (!(error instanceof DatabaseCorruptError)) throw error;
      this.logger.error('Could not mark unfinished generations as INTERRUPTED: the database file is damaged');
    } finally {
      this.settleAtStart(recovered);
    }
  }

  /** Fails every unfinished generation with `INTERRUPTED`; returns them. */
  async recover(): Promise<RecoveredGeneration[]> {
    const recovered = await this.generations.failUnfinished(INTERRUPTED_ERROR, new Date());
    if (recovered.length > 0) {
      this.logger.warn(`Marked ${recovered.length} unfinished generation(s) from a previous run as failed (INTERRUPTED)`);
    } else {
      this.logger.log('No unfinished generations from a previous run');
    }
    return recovered;
  }

  private async recoverPatiently(): Promise<RecoveredGeneration[]> {
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.recover();
      } catch (error) {
        const transient = error instanceof DatabaseUnavailableError && error.transient;
        if (!transient || attempt >= RETRY_PAUSES_MS.length) throw error;
        this.logger.warn(`Start-up recovery failed (${error.code}); retrying in ${RETRY_PAUSES_MS[attempt]} ms`);
        await sleep(RETRY_PAUSES_MS[attempt]);
      }
    }
  }
}
