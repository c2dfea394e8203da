import { randomUUID } from 'node:crypto';
import { Inject, Injectable, Logger } from '@nestjs/common';
import { CachedProbe } from '../common/cached-probe';
import { AppConfig } from '../config/app-config';
import { AppMetrics } from '../telemetry/app-metrics';
import { withSpan } from '../telemetry/tracing';
import { assertValidKey, extensionFor, generationImagePrefix, PROBE_KEY_PREFIX, referenceImageKey } from './storage-keys';
import { STORAGE_DRIVER, type StorageDriver, type StoredObject } from './storage.driver';
import { StorageError } from './storage.errors';

export type StorageOperation = 'put' | 'get' | 'delete' | 'presign' | 'check';

/** S3's upper bound for SigV4 presigned URLs: 7 days. */
const MAX_PRESIGN_SEC = 7 * 24 * 3600;
/** How long one readiness probe's outcome answers further checks. */
export const STORAGE_CHECK_TTL_MS = 1500;
/** Most objects one generation sweep lists and deletes (a generation has at most 4 images). */
const SWEEP_LIMIT = 100;

/**
 * What callers see when the store itself fails. The driver's own message (absolute paths, the S3
 * endpoint and bucket) is logged here once and kept in `StorageError.detail`, never shown.
 */
export const STORAGE_FAILURE_MESSAGES: Record<StorageOperation, string> = {
  put: 'The image could not be stored',
  get: 'The image could not be read from storage',
  delete: 'The image could not be deleted from storage',
  presign: 'A download link for the image could not be made',
  check: 'Storage is not reachable or not writable',
};

/**
 * The one entry point to image storage (S3 or the local folder, chosen from config). Every call is
 * timed (`storage.operation.duration`), traced (`storage.<operation>` span) and fails only with a
 * `StorageError`: NOT_FOUND, INVALID_KEY, or STORAGE_ERROR for anything the store itself threw
 * (with a fixed message; the driver's detail goes to the log).
 */
@Injectable()
export class StorageService {
  private readonly logger = new Logger(StorageService.name);
  private readonly presign: boolean;
  /** One key per process: a probe that could not be deleted leaves one tiny object, not one per check. */
  private readonly probeKey = `${PROBE_KEY_PREFIX}${randomUUID()}.bin`;
  private readonly probe = new CachedProbe((signal) => this.writeProbe(signal), {
    ttlMs: STORAGE_CHECK_TTL_MS,
    timeoutError: (ms) => new StorageError('STORAGE_ERROR', `storage check timed out after ${ms} ms`),
    stuckError: () => new StorageError('STORAGE_ERROR', 'the previous storage check has not finished'),
  });

  constructor(
    @Inject(STORAGE_DRIVER) private readonly driver: StorageDriver,
    config: AppConfig,
    private readonly metrics: AppMetrics,
  ) {
    this.presign = config.s3?.presign ?? false;
  }

  get kind(): 's3' | 'local' {
    return this.driver.kind;
  }

  /** `images/YYYY/MM/DD/<generationId>/<index>.<ext>`, dated in UTC so every instance agrees. */
  keyFor(generationId: string, index: number, mimeType: string, createdAt: Date): string {
    if (!Number.isInteger(index) || index < 0) throw new StorageError('INVALID_KEY', `image index must be a non-negative integer, got ${index}`);
    return `${generationImagePrefix(generationId, createdAt)}${index}.${extensionFor(mimeType)}`;
  }

  /** `references/YYYY/MM/DD/<referenceId>.<ext>`, dated in UTC like generation images. */
  referenceKeyFor(referenceId: string, mimeType: string, createdAt: Date): string {
    return referenceImageKey(referenceId, mimeType, createdAt);
  }

  /** `opts.signal` aborts the upload (S3): cancel and shutdown must not wait for a stalled store. */
  put(key: string, body: Buffer, contentType: string, opts: { signal?: AbortSignal } = {}): Promise<{ key: string; bytes: number }> {
    return this.run('put', { 'storage.object.size': body.length }, async () => {
      assertValidKey(key);
      const { signal } = opts;
      await (signal ? this.driver.put(key, body, contentType, signal) : this.driver.put(key, body, contentType));
      return { key, bytes: body.length };
    });
  }

  /** The object as a stream; the caller must consume or destroy `body`. Timing covers the open, not the download. */
  open(key: string): Promise<StoredObject> {
    return this.run('get', {}, async () => {
      assertValidKey(key);
      return this.driver.get(key);
    });
  }

  /** A presigned GET URL, or null for the local folder or when `S3_PRESIGN` is off (then stream via `open`). */
  async presignedUrl(key: string, expiresInSec = 300): Promise<string | null> {
    if (!this.presign || this.driver.kind !== 's3') return null;
    return this.run('presign', {}, async () => {
      assertValidKey(key);
      if (!Number.isInteger(expiresInSec) || expiresInSec < 1 || expiresInSec > MAX_PRESIGN_SEC) {
        throw new StorageError('STORAGE_ERROR', `presign expiry must be 1..${MAX_PRESIGN_SEC} s, got ${expiresInSec}`);
      }
      return this.driver.presignGetUrl(key, expiresInSec);
    });
  }

  delete(key: string, opts: { signal?: AbortSignal } = {}): Promise<void> {
    return this.run('delete', {}, async () => {
      assertValidKey(key);
      const { signal } = opts;
      await (signal ? this.driver.delete(key, signal) : this.driver.delete(key));
    });
  }

  /**
   * Deletes every object stored for generation `generationId` (listed by its key prefix, at most
   * 100); for the start-up sweep of generations that ended without their images.
   */
  deleteGenerationImages(
    generationId: string,
    createdAt: Date,
    opts: { signal?: AbortSignal } = {},
  ): Promise<{ deleted: number; truncated: boolean }> {
    return this.run('delete', {}, async () => {
      const prefix = generationImagePrefix(generationId, createdAt);
      return this.driver.deletePrefix(prefix, { limit: SWEEP_LIMIT, signal: opts.signal });
    });
  }

  /**
   * Readiness: writes a small object beside the images and deletes it again, so a store that
   * answers but refuses writes (read-only folder, full disk, lost permission) is not ready. Fails
   * after `timeoutMs` (the driver's call is aborted); one probe's outcome answers every check for
   * STORAGE_CHECK_TTL_MS.
   */
  check(timeoutMs = 2000): Promise<void> {
    return this.probe.check(timeoutMs);
  }

  private writeProbe(signal: AbortSignal): Promise<void> {
    return this.run('check', {}, async () => {
      await this.driver.put(this.probeKey, Buffer.from('ok'), 'application/octet-stream', signal);
      await this.driver.delete(this.probeKey, signal);
    });
  }

  private run<T>(operation: StorageOperation, attributes: Record<string, number>, fn: () => Promise<T>): Promise<T> {
    const driver = this.driver.kind;
    return withSpan(`storage.${operation}`, { 'storage.driver': driver, 'storage.operation': operation, ...attributes }, async () => {
      const started = performance.now();
      try {
        const result = await fn();
        this.metrics.recordStorageOperation(driver, operation, 'ok', (performance.now() - started) / 1000);
        return result;
      } catch (error) {
        this.metrics.recordStorageOperation(driver, operation, 'error', (performance.now() - started) / 1000);
        const failure = toStorageError(error, operation, driver);
        if (failure.code === 'STORAGE_ERROR') this.logger.warn(failure.detail);
        throw failure;
      }
    });
  }
}

function toStorageError(error: unknown, operation: StorageOperation, driver: string): StorageError {
  if (error instanceof StorageError) return error;
  const reason = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
  return new StorageError('STORAGE_ERROR', STORAGE_FAILURE_MESSAGES[operation], {
    cause: error,
    detail: `storage ${operation} failed (${driver}): ${reason}`,
  });
}
