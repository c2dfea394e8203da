import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { NestExpressApplication } from '@nestjs/platform-express';
import request from 'supertest';
import { createApp } from '../../src/app.factory';
import { loadConfig } from '../../src/config/app-config';
import { onePixelPng } from '../support/images';
import { startTestGemini, type TestGemini } from '../support/gemini-emulator';

const KEYS = ['key-alpha-0123456789', 'key-beta-0123456789', 'key-gamma-0123456789'];
const ALLOWED_ORIGIN = 'https://app.example';
const LIMIT = 3;

async function startApp(env: Record<string, string>): Promise<{ app: NestExpressApplication; dataDir: string }> {
  const dataDir = mkdtempSync(join(tmpdir(), 'his-auth-'));
  const config = loadConfig({ ...testGemini.env, DATA_DIR: dataDir, METRICS_PORT: '0', OTEL_SDK_DISABLED: 'true', LOG_LEVEL: 'silent', PALETTE_WORKERS: '1', ...env });
  const app = await createApp(config, { logger: false });
  await app.init();
  return { app, dataDir };
}

/** The bundled Gemini emulator, reached by this file's apps through GEMINI_BASE_URL. */
let testGemini: TestGemini;
beforeAll(async () => {
  testGemini = await startTestGemini();
});
afterAll(async () => {
  await testGemini?.close();
});

/** API keys, the per-key rate limit and CORS, switched on through configuration, in the real app. */
describe('API keys, rate limit and CORS (e2e)', () => {
  let app: NestExpressApplication;
  let dataDir: string;
  let http: ReturnType<typeof request>;

  beforeAll(async () => {
    ({ app, dataDir } = await startApp({ API_KEYS: KEYS.join(','), RATE_LIMIT_PER_MINUTE: String(LIMIT), CORS_ORIGINS: ALLOWED_ORIGIN }));
    http = request(app.getHttpServer());
  });

  afterAll(async () => {
    await app?.close();
    rmSync(dataDir, { recursive: true, force: true });
  });

  it.each([
    ['GET', '/api/v1/generations'],
    ['POST', '/api/v1/generations'],
    ['GET', '/api/v1/generations/01939d2a-0000-7000-8000-000000000000'],
    ['POST', '/api/v1/palettes'],
  ])('%s %s without a key → 401 API_KEY_REQUIRED', async (method, path) => {
    const res = await (method === 'GET' ? http.get(path) : http.post(path).send({ prompt: 'a cat' })).expect(401);
    expect(res.body).toEqual({ statusCode: 401, code: 'API_KEY_REQUIRED', message: expect.any(String) });
    expect(res.headers['www-authenticate']).toBe('Bearer');
  });

  it.each([
    ['an unknown x-api-key', { 'x-api-key': 'not-a-key' }],
    ['a known key with a suffix', { 'x-api-key': `${KEYS[0]}x` }],
    ['a prefix of a known key', { 'x-api-key': KEYS[0].slice(0, -1) }],
    ['an unknown bearer token', { authorization: 'Bearer not-a-key' }],
  ])('%s → 401 INVALID_API_KEY, and the key is not echoed', async (_name, headers) => {
    const res = await http.get('/api/v1/generations').set(headers).expect(401);
    expect(res.body.code).toBe('INVALID_API_KEY');
    expect(JSON.stringify(res.body)).not.toContain(Object.values(headers)[0].replace('Bearer ', ''));
  });

  it('a known key works as x-api-key and as a bearer token, also for the work routes', async () => {
    await http.get('/api/v1/generations').set('x-api-key', KEYS[0]).expect(200);
    await http.get('/api/v1/generations').set('authorization', `Bearer ${KEYS[0]}`).expect(200);
    const created = await http.post('/api/v1/generations').set('x-api-key', KEYS[0]).set('Prefer', 'wait=30').send({ prompt: 'a cat' }).expect(201);
    expect(created.body.status).toBe('succeeded');
  });

  it('probes and docs stay open without a key and are not rate limited', async () => {
    for (let i = 0; i < LIMIT + 3; i++) {
      await http.get('/health/live').expect(200);
      await http.get('/health/ready').expect(200);
    }
    await http.get('/docs-json').expect(200);
  });

  it('limits each key separately: past RATE_LIMIT_PER_MINUTE → 429 RATE_LIMITED with Retry-After', async () => {
    const [, beta, gamma] = KEYS;
    for (let i = 0; i < LIMIT; i++) await http.get('/api/v1/generations').set('x-api-key', gamma).expect(200);
    const limited = await http.get('/api/v1/generations').set('x-api-key', gamma).expect(429);
    expect(limited.body).toEqual({ statusCode: 429, code: 'RATE_LIMITED', message: expect.any(String) });
    const retryAfter = Number(limited.headers['retry-after']);
    expect(retryAfter).toBeGreaterThanOrEqual(1);
    expect(retryAfter).toBeLessThanOrEqual(60);
    // The same key sent as a bearer token shares the bucket; another key has its own.
    await http.get('/api/v1/generations').set('authorization', `Bearer ${gamma}`).expect(429);
    await http.get('/api/v1/generations').set('x-api-key', beta).expect(200);
  });

  it('CORS: a preflight from an allowed origin is answered with the exposed headers; other origins get no grant', async () => {
    const allowed = await http
      .options('/api/v1/generations')
      .set('Origin', ALLOWED_ORIGIN)
      .set('Access-Control-Request-Method', 'POST')
      .set('Access-Control-Request-Headers', 'content-type,x-api-key');
    expect(allowed.status).toBeLessThan(300);
    expect(allowed.headers['access-control-allow-origin']).toBe(ALLOWED_ORIGIN);

    const actual = await http.get('/health/live').set('Origin', ALLOWED_ORIGIN).expect(200);
    expect(actual.headers['access-control-allow-origin']).toBe(ALLOWED_ORIGIN);
    expect(actual.headers['access-control-expose-headers']).toEqual(expect.stringContaining('Retry-After'));

    const foreign = await http.options('/api/v1/generations').set('Origin', 'https://evil.example').set('Access-Control-Request-Method', 'POST');
    expect(foreign.headers['access-control-allow-origin']).toBeUndefined();
  });
});

describe('Defaults for local use (e2e)', () => {
  let app: NestExpressApplication;
  let dataDir: string;

  beforeAll(async () => {
    ({ app, dataDir } = await startApp({}));
  });

  afterAll(async () => {
    await app?.close();
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('needs no key and applies no rate limit', async () => {
    const http = request(app.getHttpServer());
    for (let i = 0; i < 30; i++) await http.get('/api/v1/generations?limit=1').expect(200);
    await http.post('/api/v1/palettes').attach('image', await onePixelPng(), 'a.png').expect(200);
  });
});
