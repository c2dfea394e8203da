import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { NestExpressApplication } from '@nestjs/platform-express';
import request from 'supertest';
import { createApp } from '../../src/app.factory';
import { loadConfig } from '../../src/config/app-config';
import { LoadShedder } from '../../src/overload/load-shedder';
import { startTestGemini, type TestGemini } from '../support/gemini-emulator';
import { onePixelPng } from '../support/images';

const HOT = { eventLoopDelayP99Ms: 400, eventLoopUtilization: 0.99, paletteQueueFill: 0, processCpuShare: 0.9 };
const CALM = { eventLoopDelayP99Ms: 2, eventLoopUtilization: 0.1, paletteQueueFill: 0, processCpuShare: 0.1 };

/**
 * Admission by measured saturation through the real app. The sampler is off (OVERLOAD_SAMPLE_MS=0):
 * the test feeds the measurements, so nothing here depends on how busy the machine is.
 */
describe('Load shedding (e2e)', () => {
  let app: NestExpressApplication;
  let dataDir: string;
  let http: ReturnType<typeof request>;
  let shedder: LoadShedder;
  let gemini: TestGemini;

  beforeAll(async () => {
    dataDir = mkdtempSync(join(tmpdir(), 'his-overload-'));
    gemini = await startTestGemini();
    const config = loadConfig({ ...gemini.env, DATA_DIR: dataDir, METRICS_PORT: '0', OTEL_SDK_DISABLED: 'true', LOG_LEVEL: 'silent', PALETTE_WORKERS: '1', OVERLOAD_SHEDDING: 'true', OVERLOAD_SAMPLE_MS: '0' });
    app = await createApp(config, { logger: false });
    await app.init();
    http = request(app.getHttpServer());
    shedder = app.get(LoadShedder);
  });

  afterAll(async () => {
    await app?.close();
    await gemini?.close();
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('while saturated refuses new generations and uploads with 503 OVERLOADED + Retry-After, and serves reads and probes', async () => {
    const before = (await http.post('/api/v1/generations').set('Prefer', 'wait=30').send({ prompt: 'a calm sea' }).expect(201)).body as { id: string };

    shedder.evaluate(HOT);
    // One hot period is not enough (hysteresis): still accepting.
    expect(shedder.shedding).toBe(false);
    shedder.evaluate(HOT);
    expect(shedder.shedding).toBe(true);

    const refused = await http.post('/api/v1/generations').send({ prompt: 'one more' }).expect(503);
    expect(refused.body).toEqual({ statusCode: 503, code: 'OVERLOADED', message: expect.any(String) });
    expect(Number(refused.headers['retry-after'])).toBeGreaterThanOrEqual(1);
    const upload = await http.post('/api/v1/palettes').attach('image', await onePixelPng(), 'a.png').expect(503);
    expect(upload.body.code).toBe('OVERLOADED');

    await http.get('/health/live').expect(200);
    await http.get('/health/ready').expect(200);
    await http.get(`/api/v1/generations/${before.id}`).expect(200);
    await http.get('/api/v1/generations?limit=5').expect(200);

    // Calm again, but it takes several calm periods to stop (no flapping).
    for (let i = 0; i < 3; i++) shedder.evaluate(CALM);
    await http.post('/api/v1/generations').send({ prompt: 'still refused' }).expect(503);
    shedder.evaluate(CALM);
    expect(shedder.shedding).toBe(false);
    await http.post('/api/v1/generations').set('Prefer', 'wait=30').send({ prompt: 'accepted again' }).expect(201);
    await http.post('/api/v1/palettes').attach('image', await onePixelPng(), 'a.png').expect(200);
  });
});
