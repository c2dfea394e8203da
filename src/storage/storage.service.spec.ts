import { trace } from '@opentelemetry/api';
import { InMemorySpanExporter, SimpleSpanProcessor, TracerProvider } from '@opentelemetry/sdk-trace';
import { loadConfig } from '../config/app-config';
import { AppMetrics } from '../telemetry/app-metrics';
import type { StorageDriver } from './storage.driver';
import { StorageError } from './storage.errors';
import { STORAGE_CHECK_TTL_MS, StorageService } from './storage.service';

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
    deletePrefix: jest.fn().mockResolvedValue({ deleted: 0, truncated: false }),
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
  it('writes a small object beside the images and deletes it again', async () => {
    const { sut, driver, record } = setup();
    await expect(sut.check()).resolves.toBeUndefined();
    expect(driver.put).toHaveBeenCalledTimes(1);
    const [key, body, type, signal] = driver.put.mock.calls[0]!;
    expect(key).toMatch(/^images\/_probe\/[0-9a-f-]{36}\.bin$/);
    expect(body).toEqual(Buffer.from('ok'));
    expect(type).toBe('application/octet-stream');
    expect(signal).toBeInstanceOf(AbortSignal);
    expect(driver.delete).toHaveBeenCalledWith(key, signal);
    expect(record).toHaveBeenCalledWith('s3', 'check', 'ok', expect.any(Number));
  });

  it('answers a storm of checks with one probe: concurrent ones share it, later ones reuse its outcome', async () => {
    let now = 0;
    jest.spyOn(performance, 'now').mockImplementation(() => now);
    try {
      const { sut, driver } = setup();
      await Promise.all(Array.from({ length: 20 }, () => sut.check()));
      now += STORAGE_CHECK_TTL_MS - 1;
      await sut.check();
      expect(driver.put).toHaveBeenCalledTimes(1);
      now += 1;
      await sut.check();
      expect(driver.put).toHaveBeenCalledTimes(2);
    } finally {
      jest.restoreAllMocks();
    }
  });

  it('rejects on timeout and aborts the driver call', async () => {
    const { sut, driver, record } = setup();
    let signal: AbortSignal | undefined;
    // A store that never answers; its client gives up when aborted, as the S3 client does.
    driver.put.mockImplementation(
      (_k: string, _b: Buffer, _t: string, s?: AbortSignal) =>
        new Promise<void>((_, reject) => {
          signal = s;
          s?.addEventListener('abort', () => reject(s.reason as Error));
        }),
    );

    const error = await failure(sut.check(20));

    expect(error.code).toBe('STORAGE_ERROR');
    expect(error.message).toMatch(/timed out after 20 ms/);
    expect(signal?.aborted).toBe(true);
    expect(record).toHaveBeenCalledWith('s3', 'check', 'error', expect.any(Number));
  });

  it('while a timed-out probe is still stuck, fails at once instead of starting another', async () => {
    let now = 0;
    const { sut, driver } = setup();
    // The local file system cannot abort a write on a hung disk.
    let unstick!: () => void;
    driver.put.mockImplementationOnce(() => new Promise<void>((resolve) => (unstick = resolve)));
    jest.spyOn(performance, 'now').mockImplementation(() => now);
    try {
      expect((await failure(sut.check(20))).message).toMatch(/timed out after 20 ms/);
      now += 10_000;
      expect((await failure(sut.check(20))).message).toMatch(/previous storage check has not finished/);
      expect(driver.put).toHaveBeenCalledTimes(1);

      unstick();
      await new Promise((r) => setImmediate(r));
      now += 10_000;
      await expect(sut.check(20)).resolves.toBeUndefined();
      expect(driver.put).toHaveBeenCalledTimes(2);
    } finally {
      jest.restoreAllMocks();
    }
  });

  it('rejects with STORAGE_ERROR when the store refuses the write', async () => {
    const { sut, driver } = setup();
    driver.put.mockRejectedValue(Object.assign(new Error('Forbidden'), { name: 'AccessDenied' }));
    const error = await failure(sut.check());
    expect(error.code).toBe('STORAGE_ERROR');
    expect(error.message).toBe('Storage is not reachable or not writable');
    expect(error.detail).toContain('AccessDenied: Forbidden');
    expect(driver.delete).not.toHaveBeenCalled();
  });
});

describe('StorageService.deleteGenerationImages', () => {
  it('deletes by the generation’s key prefix, bounded', async () => {
    const { sut, driver, record } = setup();
    driver.deletePrefix.mockResolvedValue({ deleted: 2, truncated: false });
    await expect(sut.deleteGenerationImages('gen_1', new Date('2026-01-05T23:30:00-05:00'))).resolves.toEqual({ deleted: 2, truncated: false });
    expect(driver.deletePrefix).toHaveBeenCalledWith('images/2026/01/06/gen_1/', { limit: 100, signal: undefined });
    expect(record).toHaveBeenCalledWith('s3', 'delete', 'ok', expect.any(Number));
  });

  it('refuses an id that could widen the prefix', async () => {
    const { sut, driver } = setup();
    for (const id of ['', '../x', 'a/b', '*']) {
      expect((await failure(sut.deleteGenerationImages(id, new Date()))).code).toBe('INVALID_KEY');
    }
    expect(driver.deletePrefix).not.toHaveBeenCalled();
  });
});
