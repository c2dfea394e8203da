import { Readable } from 'node:stream';
import {
  DeleteObjectCommand,
  GetObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  S3ServiceException,
} from '@aws-sdk/client-s3';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import type { AppConfig } from '../config/app-config';
import type { StorageDriver, StoredObject } from './storage.driver';
import { StorageError } from './storage.errors';

export type S3Settings = NonNullable<AppConfig['s3']>;

/**
 * Client timeouts (ms) for the SDK's Node HTTP handler (`@smithy/node-http-handler`). Without
 * them an unreachable or stalled S3 hangs a request forever (the SDK defaults are 0 = none).
 */
export const S3_TIMEOUTS = {
  /** TCP (and TLS) connect. */
  connectionTimeout: 3_000,
  /** From sending the request until the response headers arrive (uploads of a few MB included). */
  requestTimeout: 30_000,
  /** Socket idle time, which also bounds a stalled download body. */
  socketTimeout: 30_000,
};

/** S3 (or any S3-compatible server) through `@aws-sdk/client-s3`; credentials from the AWS default chain. */
export class S3Driver implements StorageDriver {
  readonly kind = 's3' as const;
  readonly bucket: string;
  private readonly client: S3Client;

  constructor(settings: S3Settings) {
    this.bucket = settings.bucket;
    this.client = new S3Client({
      endpoint: settings.endpoint,
      // An S3-compatible server rarely cares about the region, but SigV4 needs one; on AWS
      // (no endpoint) leave it to the default chain (AWS_REGION, profile).
      region: settings.region ?? (settings.endpoint ? 'us-east-1' : undefined),
      forcePathStyle: settings.forcePathStyle,
      // Since SDK 3.729 the client adds a CRC32 checksum to every upload by default and sends
      // streamed bodies with aws-chunked framing; S3-compatible servers that predate this (s3rver,
      // older MinIO/Ceph) store that framing as part of the object or reject the checksum headers.
      // WHEN_REQUIRED sends plain signed bodies and adds checksums only where an operation demands
      // one (e.g. DeleteObjects); on AWS that merely skips an optional extra integrity check.
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
      requestHandler: { ...S3_TIMEOUTS, throwOnRequestTimeout: true },
    });
  }

  async put(key: string, body: Buffer, contentType: string, signal?: AbortSignal): Promise<void> {
    await this.client.send(
      new PutObjectCommand({
        Bucket: this.bucket,
        Key: key,
        Body: body,
        ContentType: contentType,
        ContentLength: body.length,
      }),
      { abortSignal: signal },
    );
  }

  async get(key: string): Promise<StoredObject> {
    try {
      const out = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: key }));
      if (!(out.Body instanceof Readable)) throw new Error('GetObject returned no Node stream body');
      return {
        body: out.Body,
        contentType: out.ContentType ?? 'application/octet-stream',
        contentLength: out.ContentLength ?? 0,
      };
    } catch (error) {
      if (isNoSuchKey(error)) throw new StorageError('NOT_FOUND', `no object under key ${key}`, { cause: error });
      throw error;
    }
  }

  async delete(key: string, signal?: AbortSignal): Promise<void> {
    await this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: key }), { abortSignal: signal });
  }

  presignGetUrl(key: string, expiresInSec: number): Promise<string | null> {
    return getSignedUrl(this.client, new GetObjectCommand({ Bucket: this.bucket, Key: key }), { expiresIn: expiresInSec });
  }

  async deletePrefix(prefix: string, { limit, signal }: { limit: number; signal?: AbortSignal }): Promise<{ deleted: number; truncated: boolean }> {
    const listed = await this.client.send(new ListObjectsV2Command({ Bucket: this.bucket, Prefix: prefix, MaxKeys: limit }), {
      abortSignal: signal,
    });
    const keys = (listed.Contents ?? []).flatMap((o) => (o.Key ? [o.Key] : []));
    // One DeleteObject per key: a generation has at most a handful, and not every S3-compatible
    // server implements DeleteObjects.
    for (const key of keys) await this.delete(key, signal);
    return { deleted: keys.length, truncated: listed.IsTruncated === true };
  }

  async close(): Promise<void> {
    this.client.destroy();
  }
}

function isNoSuchKey(error: unknown): boolean {
  if (!(error instanceof S3ServiceException)) return false;
  // Some S3-compatible servers answer a bare 404 without the NoSuchKey code.
  return error.name === 'NoSuchKey' || error.$metadata?.httpStatusCode === 404;
}
