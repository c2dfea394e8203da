import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { Test } from '@nestjs/testing';
import type { TestingModule } from '@nestjs/testing';
import { loadConfig } from '../../src/config/app-config';
import { ConfigModule } from '../../src/config/config.module';
import { StorageError } from '../../src/storage/storage.errors';
import { StorageModule } from '../../src/storage/storage.module';
import { StorageService } from '../../src/storage/storage.service';
import { TelemetryModule } from '../../src/telemetry/telemetry.module';
import { startS3rver, useS3rverCredentials } from '../support/s3rver';
import type { S3rverHandle } from '../support/s3rver';

async function readAll(body: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of body) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

/** Polls `check` until it returns something other than undefined (checks are cached for a moment). */
async function until<T>(check: () => Promise<T | undefined>, what: string, timeoutMs = 15_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function storageFor(s3: S3rverHandle, dataDir: string, bucket = s3.bucket): Promise<TestingModule> {
  const config = loadConfig({
    DATA_DIR: dataDir,
    S3_BUCKET: bucket,
    S3_ENDPOINT: s3.endpoint,
    S3_FORCE_PATH_STYLE: 'true',
    S3_PRESIGN: 'true',
  });
  const moduleRef = await Test.createTestingModule({
    imports: [ConfigModule.forRoot(config), TelemetryModule, StorageModule],
  }).compile();
  return moduleRef.init();
}

describe('StorageService on a real S3-protocol server (s3rver)', () => {
  let s3: S3rverHandle;
  let dataDir: string;
  let moduleRef: TestingModule;
  let storage: StorageService;
  // Random bytes: an upload that gained aws-chunked framing or lost a byte cannot compare equal.
  const image = randomBytes(2 * 1024 * 1024 + 123);
  const createdAt = new Date('2026-11-24T23:59:59Z');

  beforeAll(async () => {
    useS3rverCredentials();
    dataDir = await mkdtemp(join(tmpdir(), 'storage-s3-'));
    s3 = await startS3rver({ bucket: 'generated-images' });
    moduleRef = await storageFor(s3, dataDir);
    storage = moduleRef.get(StorageService);
  });

  afterAll(async () => {
    await moduleRef?.close();
    await s3?.dispose();
    await rm(dataDir, { recursive: true, force: true });
  });

  it('uses the S3 driver and passes its readiness check', async () => {
    expect(storage.kind).toBe('s3');
    await expect(storage.check()).resolves.toBeUndefined();
  });

  it('stores an object and reads back the same bytes, type and length', async () => {
    const key = storage.keyFor('gen_roundtrip', 0, 'image/png', createdAt);
    expect(key).toBe('images/2026/11/24/gen_roundtrip/0.png');

    await expect(storage.put(key, image, 'image/png')).resolves.toEqual({ key, bytes: image.length });

    const object = await storage.open(key);
    expect(object.contentType).toBe('image/png');
    expect(object.contentLength).toBe(image.length);
    expect((await readAll(object.body)).equals(image)).toBe(true);
  });

  it('presigns a GET URL that plain fetch downloads', async () => {
    const key = storage.keyFor('gen_presign', 1, 'image/webp', createdAt);
    const bytes = randomBytes(64 * 1024);
    await storage.put(key, bytes, 'image/webp');

    const url = await storage.presignedUrl(key, 60);
    expect(url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/generated-images\/images\/2026\/11\/24\/gen_presign\/1\.webp\?/);
    expect(url).toContain('X-Amz-Signature=');

    const response = await fetch(url!);
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toBe('image/webp');
    expect(Buffer.from(await response.arrayBuffer()).equals(bytes)).toBe(true);
  });

  it('deletes: the key is then NOT_FOUND, and deleting again is fine', async () => {
    const key = storage.keyFor('gen_delete', 0, 'image/jpeg', createdAt);
    await storage.put(key, Buffer.from('jpeg bytes'), 'image/jpeg');
    await storage.delete(key);

    const error = await storage.open(key).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(StorageError);
    expect(error).toMatchObject({ code: 'NOT_FOUND', status: 404 });
    await expect(storage.delete(key)).resolves.toBeUndefined();
  });

  it('fails its check when the bucket does not exist', async () => {
    const other = await storageFor(s3, dataDir, 'no-such-bucket');
    try {
      await expect(other.get(StorageService).check()).rejects.toMatchObject({ code: 'STORAGE_ERROR' });
    } finally {
      await other.close();
    }
  });

  it('reports an outage as STORAGE_ERROR without hanging, and recovers when the server is back', async () => {
    const key = storage.keyFor('gen_outage', 0, 'image/png', createdAt);
    await s3.stop();

    // A probe's outcome answers checks for STORAGE_CHECK_TTL_MS: the outage shows within that.
    const checkError = await until(() => storage.check().then(() => undefined, (e: unknown) => e), 'the check to fail');
    expect(checkError).toBeInstanceOf(StorageError);
    expect(checkError).toMatchObject({ code: 'STORAGE_ERROR' });
    // Refused connections fail on their own (retries included), before check()'s 2 s deadline.
    expect((checkError as Error).message).not.toMatch(/timed out/);
    expect((checkError as Error).message).not.toContain('S3RVER');

    const putError = await storage.put(key, image, 'image/png').catch((e: unknown) => e);
    expect(putError).toBeInstanceOf(StorageError);
    expect(putError).toMatchObject({ code: 'STORAGE_ERROR', status: 503 });

    await s3.restart();
    await until(() => storage.check().then(() => true, () => undefined), 'the check to pass again');
    await storage.put(key, image, 'image/png');
    expect((await readAll((await storage.open(key)).body)).equals(image)).toBe(true);
    // Objects written before the outage survived it.
    const before = await storage.open('images/2026/11/24/gen_roundtrip/0.png');
    expect((await readAll(before.body)).equals(image)).toBe(true);
  });
});
