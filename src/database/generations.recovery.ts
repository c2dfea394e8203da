import { Injectable, Logger, OnApplicationBootstrap } from '@nestjs/common';
import type { GenerationError } from '../common/generation.model';
import { GenerationsRepository } from './generations.repository';

export const INTERRUPTED_ERROR: GenerationError = {
  code: 'INTERRUPTED',
  message: 'The service stopped while this generation was in progress',
};

/**
 * Jobs live in memory, so a generation still queued or running when the process starts belongs to
 * a process that died or was killed mid-work: nothing will ever finish it. Failing it at bootstrap
 * (before the HTTP server listens) gives clients a final state instead of a record stuck forever.
 */
@Injectable()
export class GenerationsRecovery implements OnApplicationBootstrap {
  private readonly logger = new Logger(GenerationsRecovery.name);

  constructor(private readonly generations: GenerationsRepository) {}

  async onApplicationBootstrap(): Promise<void> {
    await this.recover();
  }

  /** Fails every unfinished generation with `INTERRUPTED`; returns their ids. */
  async recover(): Promise<string[]> {
    const ids = await this.generations.failUnfinished(INTERRUPTED_ERROR, new Date());
    if (ids.length > 0) {
      this.logger.warn(`Marked ${ids.length} unfinished generation(s) from a previous run as failed (INTERRUPTED)`);
    } else {
      this.logger.log('No unfinished generations from a previous run');
    }
    return ids;
  }
}
