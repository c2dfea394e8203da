import { bareKeyName } from './api-keys';
import { ConfigError, loadConfig } from './app-config';

describe('loadConfig', () => {
  it('applies the contract defaults to an empty environment', () => {
    const c = loadConfig({});
    expect(c.port).toBe(3000);
    expect(c.gemini).toMatchObject({
      model: 'gemini-2.5-flash-image',
      timeoutMs: 120_000,
      maxConcurrency: 4,
      maxRetries: 1,
      apiKey: undefined,
      baseUrl: undefined,
    });
    expect(c.gemini.deadlineMs).toBeGreaterThan(2 * 120_000);
    expect(c.pipeline.maxQueue).toBe(100);
    expect(c.s3).toBeNull();
    expect(c.metrics.port).toBe(9464);
    expect(c.telemetry).toMatchObject({ disabled: false, serviceName: 'hybrid-image-search' });
    expect(c.palette.workers).toBeGreaterThanOrEqual(1);
    expect(c.dataDir).toMatch(/data$/);
    expect(c.database.busyTimeoutMs).toBe(1000);
  });

  it('parses numbers, booleans and lists', () => {
    const c = loadConfig({
      PORT: '8080',
      GEMINI_API_KEY: 'k',
      S3_BUCKET: 'images',
      S3_ENDPOINT: 'http://127.0.0.1:4568',
      S3_FORCE_PATH_STYLE: 'true',
      API_KEYS: 'alice:alice-key-0123456789, bob-key-0123456789abc,,carol:with:colons-0123456789',
      METRICS_PORT: '0',
    });
    expect(c.port).toBe(8080);
    expect(c.gemini).toMatchObject({ apiKey: 'k', baseUrl: undefined });
    expect(c.s3).toMatchObject({ bucket: 'images', endpoint: 'http://127.0.0.1:4568', forcePathStyle: true });
    expect(c.http.apiKeys).toEqual([
      { name: 'alice', key: 'alice-key-0123456789' },
      { name: bareKeyName('bob-key-0123456789abc'), key: 'bob-key-0123456789abc' },
      { name: 'carol', key: 'with:colons-0123456789' },
    ]);
    expect(bareKeyName('bob-key-0123456789abc')).toMatch(/^key-[0-9a-f]{12}$/);
    expect(c.metrics.port).toBe(0);
  });

  it('refuses API_KEYS with duplicate names or keys, bad names or short keys, naming each entry', () => {
    let error: unknown;
    try {
      loadConfig({ API_KEYS: 'a:key-one-0123456789,a:key-two-0123456789,b:key-one-0123456789,bad name:key-three-0123456789,c:' });
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(ConfigError);
    const problems = (error as ConfigError).problems;
    expect(problems).toEqual([
      expect.stringMatching(/entry 2: the name a is used twice/),
      expect.stringMatching(/entry 3 \(b\): the same key is configured twice/),
      expect.stringMatching(/entry 4: the name must be/),
      expect.stringMatching(/entry 5 \(c\): the key must be non-empty/),
    ]);
    // The keys themselves never appear in the message.
    expect((error as Error).message).not.toMatch(/key-one|key-two|key-three/);
  });

  it('lowers the palette threads below the event loop by default (issue #15), and parses the palette thread settings', () => {
    expect(loadConfig({}).palette).toMatchObject({ workerNice: 10, niceThreads: 'all', libvipsThreads: 1 });
    expect(loadConfig({ PALETTE_WORKER_NICE: '0', PALETTE_NICE_THREADS: 'workers', PALETTE_LIBVIPS_THREADS: '0' }).palette).toMatchObject({
      workerNice: 0,
      niceThreads: 'workers',
      libvipsThreads: 0,
    });
    expect(loadConfig({ PALETTE_WORKER_NICE: '19', PALETTE_LIBVIPS_THREADS: '4' }).palette).toMatchObject({ workerNice: 19, libvipsThreads: 4 });
  });

  it.each([
    ['PALETTE_WORKER_NICE', '-1'],
    ['PALETTE_WORKER_NICE', '20'],
    ['PALETTE_WORKER_NICE', '2.5'],
    ['PALETTE_WORKER_NICE', 'low'],
    ['PALETTE_NICE_THREADS', 'libvips'],
    ['PALETTE_NICE_THREADS', ''],
    ['PALETTE_LIBVIPS_THREADS', '-1'],
    ['PALETTE_LIBVIPS_THREADS', 'many'],
  ])('refuses %s=%s at start, naming it', (name, value) => {
    expect(() => loadConfig({ [name]: value })).toThrow(ConfigError);
    expect(() => loadConfig({ [name]: value })).toThrow(name);
  });

  it('names every bad variable in one error', () => {
    let error: unknown;
    try {
      loadConfig({ PORT: 'abc', GEMINI_MAX_CONCURRENCY: '0', S3_FORCE_PATH_STYLE: 'maybe', GEMINI_BASE_URL: 'not a url' });
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(ConfigError);
    const message = (error as Error).message;
    for (const name of ['PORT', 'GEMINI_MAX_CONCURRENCY', 'S3_FORCE_PATH_STYLE', 'GEMINI_BASE_URL']) {
      expect(message).toContain(name);
    }
    expect((error as ConfigError).problems.length).toBeGreaterThanOrEqual(4);
  });
});
