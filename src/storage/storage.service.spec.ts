import { trace } from '@opentelemetry/api';
import { InMemorySpanExporter, SimpleSpanProcessor, TracerProvider } from '@opentelemetry/sdk-trace';
import { loadConfig } from '../config/app-config';
import { AppMetrics } from '../telemetry/app-metrics';
import type { StorageDriver } from './storage.driver';
import { StorageError } from './storage.errors';
import { StorageService } from './storage.service';

const spans = new InMemorySpanExporter();
const tracerProvider = new TracerProvider({ spanProcessors: [new SimpleSpanProcessor({ exporter: spans })] });
trace.setGlobalTracerProvider(tracerProvider);

async function finishedSpans() {
  await tracerProvider.forceFlush();
  return spans.getFinishedSpans();
}

type MockDriver = { [K in keyof StorageDriver]: StorageDriver[K] extends (...args: infer A) => infer R ? jest.Mock<R, A> : StorageDriver[K] };

function setup(options: { kind?: 's3' | 'local'; presign?: boolean } = {}) {
  const kind = options.kind ?? 's3';
  const driver: MockDriver = {
    kind,
    put: jest.fn().mockResolvedValue(undefined),
    get: jest.fn(),
    delete: jest.fn().mockResolvedValue(undefined),
    presignGetUrl: jest.fn().mockResolvedValue('https://bucket.example/key?X-Amz-Signature=sig'),
    check: jest.fn().mockResolvedValue(undefined),
    close: jest.fn().mockResolvedValue(undefined),
  };
  const env: Record<string, string> = { DATA_DIR: '/tmp/unused' };
  if (kind === 's3') Object.assign(env, { S3_BUCKET: 'images', S3_PRESIGN: String(options.presign ?? false) });
  const metrics = new AppMetrics();
  const record = jest.spyOn(metrics, 'recordStorageOperation');
  const sut = new StorageService(driver as StorageDriver, loadConfig(env), metrics);
  return { sut, driver, record };
}

async function failure(promise: Promise<unknown>): Promise<StorageError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(StorageError);
  return error as StorageError;
}

beforeEach(() => spans.reset());

describe('StorageService.keyFor', () => {
  const { sut } = setup();

  it('partitions by the UTC date of creation', () => {
    // 23:30 in New York on 5 January is already 6 January in UTC.
    expect(sut.keyFor('gen_abc-1', 0, 'image/png', new Date('2026-01-05T23:30:00-05:00'))).toBe('images/2026/01/06/gen_abc-1/0.png');
    expect(sut.keyFor('g1', 3, 'image/jpeg', new Date('2026-11-24T00:00:00Z'))).toBe('images/2026/11/24/g1/3.jpg');
  });

  it('derives the extension from the MIME type, bin when unknown', () => {
    const at = new Date('2026-11-24T12:00:00Z');
    expect(sut.keyFor('g', 0, 'image/webp', at)).toMatch(/\/0\.webp$/);
    expect(sut.keyFor('g', 0, 'IMAGE/PNG; charset=binary', at)).toMatch(/\/0\.png$/);
    expect(sut.keyFor('g', 0, 'application/x-unknown', at)).toMatch(/\/0\.bin$/);
  });

  it('rejects ids and indexes that would make an unsafe or ambiguous key', () => {
    const at = new Date();
    for (const id of ['', '../etc', 'a/b', 'x'.repeat(129)]) {
      expect(() => sut.keyFor(id, 0, 'image/png', at)).toThrow(expect.objectContaining({ code: 'INVALID_KEY' }));
    }
    expect(() => sut.keyFor('g', -1, 'image/png', at)).toThrow(StorageError);
    expect(() => sut.keyFor('g', 1.5, 'image/png', at)).toThrow(StorageError);
    expect(() => sut.keyFor('g', 0, 'image/png', new Date('nope'))).toThrow(StorageError);
  });
});

describe('StorageService operations', () => {
  const key = 'images/2026/11/24/g1/0.png';

  it('puts through the driver, returns the size, and records an ok operation and a span', async () => {
    const { sut, driver, record } = setup();
    const body = Buffer.from('png bytes');

    await expect(sut.put(key, body, 'image/png')).resolves.toEqual({ key, bytes: body.length });

    expect(driver.put).toHaveBeenCalledWith(key, body, 'image/png');
    expect(record).toHaveBeenCalledTimes(1);
    expect(record).toHaveBeenCalledWith('s3', 'put', 'ok', expect.any(Number));
    const [span] = await finishedSpans();
    expect(span.name).toBe('storage.put');
    expect(span.attributes).toEqual({ 'storage.driver': 's3', 'storage.operation': 'put', 'storage.object.size': body.length });
  });

  it('wraps a driver failure in STORAGE_ERROR with a fixed message, the detail without credentials, and records an error', async () => {
    const { sut, driver, record } = setup();
    const cause = new Error(
      'connect ECONNREFUSED https://AKIAABCDEFGHIJKLMNOP:wJalrXUtnFEMI@s3.example/x?X-Amz-Credential=AKIAABCDEFGHIJKLMNOP%2F20261124&X-Amz-Signature=deadbeef',
    );
    driver.put.mockRejectedValue(cause);

    const error = await failure(sut.put(key, Buffer.from('x'), 'image/png'));

    expect(error).toMatchObject({ code: 'STORAGE_ERROR', status: 503, cause });
    expect(error.message).toBe('The image could not be stored');
    expect(error.detail).toContain('storage put failed (s3)');
    expect(error.detail).toContain('ECONNREFUSED');
    for (const secret of ['AKIAABCDEFGHIJKLMNOP', 'wJalrXUtnFEMI', 'deadbeef']) expect(error.detail).not.toContain(secret);
    expect(record).toHaveBeenCalledWith('s3', 'put', 'error', expect.any(Number));
    const [span] = await finishedSpans();
    expect(span.status.code).toBe(2); // SpanStatusCode.ERROR
    expect(span.attributes['error.type']).toBe('STORAGE_ERROR');
  });

  it('passes NOT_FOUND from the driver through unchanged', async () => {
    const { sut, driver, record } = setup();
    const notFound = new StorageError('NOT_FOUND', `no object under key ${key}`);
    driver.get.mockRejectedValue(notFound);

    await expect(sut.open(key)).rejects.toBe(notFound);
    expect(notFound.status).toBe(404);
    expect(record).toHaveBeenCalledWith('s3', 'get', 'error', expect.any(Number));
  });

  it('rejects an invalid key with INVALID_KEY before touching the driver', async () => {
    const { sut, driver } = setup();
    for (const bad of ['../secrets', '/etc/passwd', 'a//b', 'images/ok/../../x', 'spaces not allowed', '']) {
      expect((await failure(sut.put(bad, Buffer.from('x'), 'image/png'))).code).toBe('INVALID_KEY');
      expect((await failure(sut.open(bad))).code).toBe('INVALID_KEY');
      expect((await failure(sut.delete(bad))).code).toBe('INVALID_KEY');
    }
    expect(driver.put).not.toHaveBeenCalled();
    expect(driver.get).not.toHaveBeenCalled();
    expect(driver.delete).not.toHaveBeenCalled();
  });

  it('deletes through the driver', async () => {
    const { sut, driver, record } = setup({ kind: 'local' });
    await sut.delete(key);
    expect(driver.delete).toHaveBeenCalledWith(key);
    expect(record).toHaveBeenCalledWith('local', 'delete', 'ok', expect.any(Number));
  });
});

describe('StorageService.presignedUrl', () => {
  const key = 'images/2026/11/24/g1/0.png';

  it('returns the driver URL with the default 300 s expiry when S3 presigning is on', async () => {
    const { sut, driver } = setup({ presign: true });
    await expect(sut.presignedUrl(key)).resolves.toBe('https://bucket.example/key?X-Amz-Signature=sig');
    expect(driver.presignGetUrl).toHaveBeenCalledWith(key, 300);
  });

  it('returns null when presigning is off or the driver is local', async () => {
    for (const options of [{ presign: false }, { kind: 'local' as const }]) {
      const { sut, driver } = setup(options);
      await expect(sut.presignedUrl(key)).resolves.toBeNull();
      expect(driver.presignGetUrl).not.toHaveBeenCalled();
    }
  });

  it('rejects an expiry S3 would refuse', async () => {
    const { sut } = setup({ presign: true });
    await expect(sut.presignedUrl(key, 0)).rejects.toBeInstanceOf(StorageError);
    await expect(sut.presignedUrl(key, 8 * 24 * 3600)).rejects.toBeInstanceOf(StorageError);
  });
});

describe('StorageService.check', () => {
  it('resolves when the driver check does', async () => {
    const { sut, driver, record } = setup();
    await expect(sut.check()).resolves.toBeUndefined();
    expect(driver.check).toHaveBeenCalledWith(expect.any(AbortSignal));
    expect(record).toHaveBeenCalledWith('s3', 'check', 'ok', expect.any(Number));
  });

  it('rejects on timeout and aborts the driver call', async () => {
    const { sut, driver, record } = setup();
    let signal: AbortSignal | undefined;
    driver.check.mockImplementation((s: AbortSignal) => {
      signal = s;
      return new Promise<void>(() => undefined); // a store that never answers
    });

    const error = await failure(sut.check(20));

    expect(error.code).toBe('STORAGE_ERROR');
    expect(error.message).toMatch(/timed out after 20 ms/);
    expect(signal?.aborted).toBe(true);
    expect(record).toHaveBeenCalledWith('s3', 'check', 'error', expect.any(Number));
  });

  it('rejects with STORAGE_ERROR when the driver check fails', async () => {
    const { sut, driver } = setup();
    driver.check.mockRejectedValue(Object.assign(new Error('Forbidden'), { name: 'AccessDenied' }));
    const error = await failure(sut.check());
    expect(error.code).toBe('STORAGE_ERROR');
    expect(error.message).toBe('Storage is not reachable or not writable');
    expect(error.detail).toContain('AccessDenied: Forbidden');
  });
});
