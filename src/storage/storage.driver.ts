import type { Readable } from 'node:stream';

export interface StoredObject {
  /** The bytes, streamed; the consumer must read or destroy it (it holds a file handle or socket). */
  body: Readable;
  contentType: string;
  contentLength: number;
}

/**
 * One backing store. Drivers throw `StorageError` for `NOT_FOUND` / `INVALID_KEY` and let any
 * other failure through; `StorageService` wraps those as `STORAGE_ERROR`.
 */
export interface StorageDriver {
  readonly kind: 's3' | 'local';
  /**
   * Stores the whole object, replacing any previous one under `key`. `signal` aborts the transfer
   * where the store can (S3); an aborted upload may or may not have been stored.
   */
  put(key: string, body: Buffer, contentType: string, signal?: AbortSignal): Promise<void>;
  get(key: string): Promise<StoredObject>;
  /** Idempotent, like S3: deleting a missing key succeeds. `signal` as for `put`. */
  delete(key: string, signal?: AbortSignal): Promise<void>;
  /** A time-limited URL for a plain GET, or null when the store has none (local folder). */
  presignGetUrl(key: string, expiresInSec: number): Promise<string | null>;
  /**
   * Deletes the objects whose keys start with `prefix` (which ends with `/`), at most `limit` of
   * them (the local folder also removes its temp and sidecar files there); `truncated` when more
   * were left. Used to sweep the images of one generation.
   */
  deletePrefix(prefix: string, opts: { limit: number; signal?: AbortSignal }): Promise<{ deleted: number; truncated: boolean }>;
  close(): Promise<void>;
}

/** Nest injection token of the driver chosen from config (see `createStorageDriver`). */
export const STORAGE_DRIVER = Symbol('STORAGE_DRIVER');
