import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { NestExpressApplication } from '@nestjs/platform-express';
import request from 'supertest';
import { createApp } from '../../src/app.factory';
import { loadConfig } from '../../src/config/app-config';
import { startTestGemini, type TestGemini } from '../support/gemini-emulator';

const GENERATIONS = '/api/v1/generations';

/** The bundled Gemini emulator, reached by this file's apps through GEMINI_BASE_URL. */
let testGemini: TestGemini;
beforeAll(async () => {
  testGemini = await startTestGemini();
});
afterAll(async () => {
  await testGemini?.close();
});

/**
 * Text that is not well-formed Unicode (a lone UTF-16 surrogate, which JSON's `\uXXXX` escapes
 * can carry) is refused with 400 VALIDATION_FAILED instead of being echoed as `\ud800`, stored,
 * and read back later as U+FFFD; proper surrogate pairs (emoji and the like) pass unchanged.
 */
describe('Well-formed Unicode input (e2e)', () => {
  let app: NestExpressApplication;
  let dataDir: string;
  let http: ReturnType<typeof request>;

  beforeAll(async () => {
    dataDir = mkdtempSync(join(tmpdir(), 'his-unicode-'));
    const config = loadConfig({ ...testGemini.env, DATA_DIR: dataDir, METRICS_PORT: '0', OTEL_SDK_DISABLED: 'true', LOG_LEVEL: 'silent', PALETTE_WORKERS: '1' });
    app = await createApp(config, { logger: false });
    await app.init();
    http = request(app.getHttpServer());
  });

  afterAll(async () => {
    await app?.close();
    rmSync(dataDir, { recursive: true, force: true });
  });

  /** Sends the JSON text as written: the escapes reach the server's JSON parser untouched. */
  const postRaw = (json: string) => http.post(GENERATIONS).set('content-type', 'application/json').send(json);

  it.each([
    ['a lone high surrogate', String.raw`{"prompt":"a red apple \ud800"}`],
    ['a lone low surrogate', String.raw`{"prompt":"\udc00 a red apple"}`],
    ['a high surrogate before a plain letter', String.raw`{"prompt":"a red \ud83dapple"}`],
    ['a pair in the wrong order', String.raw`{"prompt":"a red apple \udc31\ud83d"}`],
    ['a lone surrogate next to a valid pair', String.raw`{"prompt":"\ud83d\udc31\ud83d a cat"}`],
  ])('%s in the prompt → 400 VALIDATION_FAILED', async (_name, json) => {
    const res = await postRaw(json);
    expect(res.status).toBe(400);
    expect(res.body).toEqual({ statusCode: 400, code: 'VALIDATION_FAILED', message: expect.stringContaining('prompt must be well-formed Unicode') });
  });

  it('stores no record for any of them', async () => {
    const list = await http.get(GENERATIONS).expect(200);
    expect(list.body.items).toEqual([]);
  });

  it('accepts surrogate pairs and other non-ASCII text, and gives it back exactly', async () => {
    const prompt = 'a cat 🐱 on a 𝄞 score, naïve café, 日本の猫';
    const created = await postRaw(JSON.stringify({ prompt })).expect(202);
    expect(created.body.prompt).toBe(prompt);
    const stored = await http.get(`${GENERATIONS}/${created.body.id}`).expect(200);
    expect(stored.body.prompt).toBe(prompt);
    await http.post(`${GENERATIONS}/${created.body.id}/cancel`);
  });
});
