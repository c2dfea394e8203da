import { readFile } from 'node:fs/promises';
import { Injectable, Logger } from '@nestjs/common';
import { newGenerationId } from '../common/ids';
import type { Principal } from '../common/principal';
import { Reference, REFERENCE_PALETTE_SIZE } from '../common/reference.model';
import { Owner } from '../database/generations.repository';
import { ReferencesRepository } from '../database/references.repository';
import { StorageSweepRepository } from '../database/storage-sweep.repository';
import { PaletteService } from '../palette/palette.service';
import { paletteAppError } from '../palettes/palette-app-error';
import { StorageService } from '../storage/storage.service';
import { AppMetrics, Outcome } from '../telemetry/app-metrics';
import { withSpan } from '../telemetry/tracing';
import { clientClosedRequest, UploadedImage } from '../uploads/image-upload.interceptor';

/** The MIME type of each format the palette engine reads (what the bytes are, not what the client said). */
const MIME_BY_FORMAT: Record<string, string> = {
  png: 'image/png',
  jpeg: 'image/jpeg',
  webp: 'image/webp',
  avif: 'image/avif',
  gif: 'image/gif',
  tiff: 'image/tiff',
};

/**
 * How long an upload's image may stay stored without its record before the sweep deletes it: far
 * longer than any upload takes between storing and recording (seconds), so only the image of an
 * upload that died in between (a crash, a lost database) is ever swept.
 */
export const PENDING_UPLOAD_SWEEP_MS = 60 * 60 * 1000;
/** An image deletion done while a request waits gives up after this (the sweep list keeps it). */
const DELETE_TIMEOUT_MS = 10_000;

export interface NewReference {
  title?: string;
  tags: string[];
}

/**
 * Uploading and deleting references, so that no record ever points at a missing image and no image
 * is left without a record:
 *
 * - upload: the palette is extracted first (the worker pool reads the temp file; a hostile or
 *   unreadable file stops here, nothing stored); the image's key is put on the sweep list (due in an
 *   hour), the image stored, then the record written in the transaction that takes the key off the
 *   list. A failure after storing deletes the image; a crash leaves the list entry, and the sweep
 *   deletes the image when it is due.
 * - delete: the record, its search entry and a sweep entry for its image go in one transaction; then
 *   the image is deleted and the entry removed. If the image cannot be deleted now (storage down), the
 *   entry stays and StorageSweeper retries it with backoff.
 */
@Injectable()
export class ReferencesService {
  private readonly logger = new Logger(ReferencesService.name);

  constructor(
    private readonly references: ReferencesRepository,
    private readonly sweep: StorageSweepRepository,
    private readonly palette: PaletteService,
    private readonly storage: StorageService,
    private readonly metrics: AppMetrics,
  ) {}

  async upload(image: UploadedImage, fields: NewReference, principal: Principal): Promise<Reference> {
    return withSpan('reference.upload', { 'image.bytes': image.size }, async (span) => {
      const id = newGenerationId();
      const createdAt = new Date();
      const extracted = await this.stage('palette', async () => {
        try {
          return await this.palette.extract({ path: image.path, bytes: image.size }, REFERENCE_PALETTE_SIZE, { signal: image.signal });
        } catch (error) {
          if (image.signal.aborted) throw clientClosedRequest();
          throw paletteAppError(error, this.palette, this.logger);
        }
      });
      const mimeType = MIME_BY_FORMAT[extracted.format] ?? 'application/octet-stream';
      const key = this.storage.referenceKeyFor(id, mimeType, createdAt);
      span.setAttributes({ 'reference.id': id, 'image.format': extracted.format, 'image.width': extracted.width, 'image.height': extracted.height });
      const reference: Reference = {
        id,
        owner: principal.owner,
        title: fields.title ?? null,
        tags: fields.tags,
        storageKey: key,
        mimeType,
        width: extracted.width,
        height: extracted.height,
        bytes: image.size,
        palette: extracted.colors,
        createdAt,
      };
      await this.sweep.schedule(key, new Date(Date.now() + PENDING_UPLOAD_SWEEP_MS), 'upload');
      try {
        await this.stage('store', async () => this.storage.put(key, await readFile(image.path), mimeType, { signal: image.signal }));
        await this.stage('record', () => this.references.create(reference, { pendingKey: key }));
      } catch (error) {
        await this.discard(key);
        if (image.signal.aborted) throw clientClosedRequest();
        throw error;
      }
      return reference;
    });
  }

  /** Deletes the reference and its image; false when the caller has no such reference. */
  async delete(id: string, owner: Owner): Promise<boolean> {
    return withSpan('reference.delete', { 'reference.id': id }, async () => {
      const deleted = await this.stage('delete', () => this.references.delete(id, owner));
      if (!deleted) return false;
      try {
        await this.storage.delete(deleted.storageKey, { signal: AbortSignal.timeout(DELETE_TIMEOUT_MS) });
        await this.sweep.done(deleted.storageKey);
      } catch (error) {
        // The record is gone either way; the sweep list still has the image.
        this.logger.warn(`Reference ${id}: its image is left for the storage sweep (${(error as Error)?.message ?? String(error)})`);
      }
      return true;
    });
  }

  /** Deletes an upload's image that will not be recorded, and its sweep entry; on failure the entry stays for the sweep. */
  private async discard(key: string): Promise<void> {
    try {
      await this.storage.delete(key, { signal: AbortSignal.timeout(DELETE_TIMEOUT_MS) });
      await this.sweep.done(key);
    } catch (error) {
      this.logger.warn(`Upload ${key}: its image is left for the storage sweep (${(error as Error)?.message ?? String(error)})`);
    }
  }

  private async stage<T>(stage: 'palette' | 'store' | 'record' | 'delete', fn: () => Promise<T>): Promise<T> {
    const started = performance.now();
    let outcome: Outcome = 'error';
    try {
      const result = await withSpan(`reference.${stage}`, {}, fn);
      outcome = 'ok';
      return result;
    } finally {
      this.metrics.recordReferenceStage(stage, outcome, (performance.now() - started) / 1000);
    }
  }
}
