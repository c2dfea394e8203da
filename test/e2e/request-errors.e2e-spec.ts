import { mkdtempSync, rmSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { NestExpressApplication } from '@nestjs/platform-express';
import { createApp } from '../../src/app.factory';
import { loadConfig } from '../../src/config/app-config';
import { startTestGemini, type TestGemini } from '../support/gemini-emulator';

/**
 * Rough edges a new user met (issue 14, item 11): one clear answer per mistake instead of a
 * pile of validation messages. The real app over real HTTP (fetch decides the headers).
 */
describe('Answers to common request mistakes (e2e)', () => {
  let gemini: TestGemini;
  let app: NestExpressApplication;
  let dataDir: string;
  let base: string;

  beforeAll(async () => {
    gemini = await startTestGemini();
    dataDir = mkdtempSync(join(tmpdir(), 'his-request-errors-'));
    const config = loadConfig({ ...gemini.env, DATA_DIR: dataDir, METRICS_PORT: '0', OTEL_SDK_DISABLED: 'true', LOG_LEVEL: 'silent', PALETTE_WORKERS: '1' });
    app = await createApp(config, { logger: false });
    await app.listen(0, '127.0.0.1');
    base = `http://127.0.0.1:${(app.getHttpServer().address() as AddressInfo).port}/api/v1/generations`;
  });

  afterAll(async () => {
    await app?.close();
    await gemini?.close();
    rmSync(dataDir, { recursive: true, force: true });
  });

  const post = async (body: string | Uint8Array, headers: Record<string, string> = {}) => {
    const res = await fetch(base, { method: 'POST', headers, body });
    return { status: res.status, body: (await res.json()) as Record<string, unknown> };
  };
  const list = async (query: string) => {
    const res = await fetch(`${base}?${query}`);
    return { status: res.status, body: (await res.json()) as Record<string, unknown> };
  };

  it.each([
    ['no Content-Type at all', new TextEncoder().encode('{"prompt":"a red apple"}'), {}, 'no Content-Type was sent'],
    ['text/plain (fetch with a string body)', '{"prompt":"a red apple"}', {}, 'got text/plain;charset=UTF-8'],
    ['a form', 'prompt=a+red+apple', { 'content-type': 'application/x-www-form-urlencoded' }, 'got application/x-www-form-urlencoded'],
  ] as const)('a JSON body sent with %s → 415 UNSUPPORTED_MEDIA_TYPE, not "prompt must …"', async (_name, body, headers, detail) => {
    const { status, body: answer } = await post(body, headers);
    expect(status).toBe(415);
    expect(answer).toEqual({ statusCode: 415, code: 'UNSUPPORTED_MEDIA_TYPE', message: expect.stringContaining('Content-Type: application/json') });
    expect(answer.message).toContain(detail);
  });

  it('application/json with a charset is accepted', async () => {
    const { status } = await post(JSON.stringify({ prompt: 'a red apple' }), { 'content-type': 'application/json; charset=utf-8' });
    expect(status).toBe(202);
  });

  it.each([
    ['limit=abc', 'limit must be an integer from 1 to 100'],
    ['limit=1.5', 'limit must be an integer from 1 to 100'],
    ['limit=', 'limit must be an integer from 1 to 100'],
    ['limit=0x10', 'limit must be an integer from 1 to 100'],
    ['limit=0', 'limit must not be less than 1'],
    ['limit=101', 'limit must not be greater than 100'],
  ])('%s → one clear message', async (query, message) => {
    expect(await list(query)).toEqual({ status: 400, body: { statusCode: 400, code: 'VALIDATION_FAILED', message } });
  });

  it.each([
    [{ prompt: 'ok', count: 'two' }, 'count must be an integer from 1 to 4'],
    [{ prompt: 'ok', paletteSize: 2.5 }, 'paletteSize must be an integer from 1 to 12'],
    [{}, 'prompt must be a string'],
    [{ prompt: 42 }, 'prompt must be a string'],
  ])('a body of the wrong type reports the type once: %j', async (body, message) => {
    expect(await post(JSON.stringify(body), { 'content-type': 'application/json' })).toEqual({
      status: 400,
      body: { statusCode: 400, code: 'VALIDATION_FAILED', message },
    });
  });
});
