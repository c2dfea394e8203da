import { mkdirSync, readdirSync, statSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import { Injectable, Logger } from '@nestjs/common';
import { AppConfig } from '../config/app-config';
import { AppMetrics } from '../telemetry/app-metrics';
import { TempFileStorage } from './temp-file.storage';
import { UploadBudget } from './upload-budget';

/** A temporary file this old belongs to no running request (Node's requestTimeout is 5 min): a crash's leftover. */
const STALE_AFTER_MS = 60 * 60 * 1000;

/**
 * What every multipart upload route shares: the directory uploads stream into (UPLOAD_TMP_DIR), the
 * storage engine writing there, and the byte budget of uploads in flight (UPLOAD_MAX_INFLIGHT_MB).
 * Routes use it through ImageUploadInterceptor.
 */
@Injectable()
export class UploadsService {
  private readonly logger = new Logger(UploadsService.name);
  readonly tmpDir: string;
  readonly storage: TempFileStorage;
  private readonly budget: UploadBudget;

  constructor(config: AppConfig, metrics: AppMetrics) {
    this.tmpDir = config.uploads.tmpDir;
    mkdirSync(this.tmpDir, { recursive: true, mode: 0o700 });
    this.removeStaleFiles();
    this.storage = new TempFileStorage(this.tmpDir);
    this.budget = new UploadBudget(config.uploads.maxInflightBytes);
    metrics.gauge('upload.inflight.size', 'Declared bytes of the uploads in progress (bounded by UPLOAD_MAX_INFLIGHT_MB)', () => this.budget.stats().bytes, 'By');
    metrics.gauge('upload.inflight', 'Uploads in progress, from admission until their answer is sent', () => this.budget.stats().uploads, '{upload}');
  }

  /** Reserves `bytes` for one upload: the release function, or null when the budget is spent. */
  admit(bytes: number): (() => void) | null {
    return this.budget.reserve(bytes);
  }

  stats(): { bytes: number; uploads: number; maxBytes: number } {
    return { ...this.budget.stats(), maxBytes: this.budget.maxBytes };
  }

  retryAfterSeconds(): number {
    return this.budget.retryAfterSeconds();
  }

  /** Temporary files left by a process that was killed mid-upload. */
  private removeStaleFiles(): void {
    const now = Date.now();
    for (const name of readdirSync(this.tmpDir)) {
      if (!name.startsWith('upload-')) continue;
      const path = join(this.tmpDir, name);
      try {
        if (now - statSync(path).mtimeMs > STALE_AFTER_MS) unlinkSync(path);
      } catch (error) {
        this.logger.warn(`Could not remove the stale upload ${path}: ${(error as Error).message}`);
      }
    }
  }
}
