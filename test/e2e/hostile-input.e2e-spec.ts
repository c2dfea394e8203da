import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import type { NestExpressApplication } from '@nestjs/platform-express';
import request from 'supertest';
import { createApp } from '../../src/app.factory';
import { loadConfig } from '../../src/config/app-config';
import { UNSUPPORTED_IMAGE_MESSAGE } from '../../src/palette/palette.worker';
import { deepPngBomb, hugeCanvasGif, onePixelPng, pixelBombPng, referenceImage, svgDisguises, truncate } from '../support/images';
import { startTestGemini, type TestGemini } from '../support/gemini-emulator';

type Body = Record<string, any>;

/** What a hostile request sends: a JSON value (serialised by supertest) or raw bytes with headers. */
interface RawBody {
  raw: string | Buffer;
  headers?: Record<string, string>;
}
interface Case {
  name: string;
  method?: 'get' | 'post';
  path?: string;
  body?: unknown;
  status: number;
  code: string;
}

const GENERATIONS = '/api/v1/generations';
/** A well-formed id no generation has. */
const UNKNOWN_ID = '01939d2a-0000-7000-8000-000000000000';
const raw = (body: string | Buffer, contentType = 'application/json', headers: Record<string, string> = {}): RawBody => ({
  raw: body,
  headers: { 'content-type': contentType, ...headers },
});

/** Bad requests to the JSON routes; each must get its 4xx and contract error code. */
const JSON_CASES: Case[] = [
  // Not JSON, or not a JSON object
  { name: 'truncated JSON', body: raw('{"prompt": '), status: 400, code: 'INVALID_JSON' },
  { name: 'JSON followed by garbage', body: raw('{"prompt":"a"} trailing'), status: 400, code: 'INVALID_JSON' },
  { name: 'a bare JSON string', body: raw('"a cat"'), status: 400, code: 'INVALID_JSON' },
  { name: 'JSON null', body: raw('null'), status: 400, code: 'INVALID_JSON' },
  { name: 'a JSON array', body: raw('[{"prompt":"a cat"}]'), status: 400, code: 'VALIDATION_FAILED' },
  { name: 'no body', body: raw(''), status: 400, code: 'VALIDATION_FAILED' },
  { name: 'a form-encoded body', body: raw('prompt=a+cat', 'application/x-www-form-urlencoded'), status: 415, code: 'UNSUPPORTED_MEDIA_TYPE' },
  { name: 'JSON sent as text/plain', body: raw('{"prompt":"a cat"}', 'text/plain'), status: 415, code: 'UNSUPPORTED_MEDIA_TYPE' },
  // Wrong types
  { name: 'a numeric prompt', body: { prompt: 42 }, status: 400, code: 'VALIDATION_FAILED' },
  { name: 'an array prompt', body: { prompt: ['a', 'cat'] }, status: 400, code: 'VALIDATION_FAILED' },
  { name: 'an operator-object prompt', body: { prompt: { $gt: '' } }, status: 400, code: 'VALIDATION_FAILED' },
  { name: 'count as a string', body: { prompt: 'ok', count: '2' }, status: 400, code: 'VALIDATION_FAILED' },
  { name: 'a fractional count', body: { prompt: 'ok', count: 1.5 }, status: 400, code: 'VALIDATION_FAILED' },
  { name: 'a boolean paletteSize', body: { prompt: 'ok', paletteSize: true }, status: 400, code: 'VALIDATION_FAILED' },
  { name: 'a numeric aspectRatio', body: { prompt: 'ok', aspectRatio: 16 }, status: 400, code: 'VALIDATION_FAILED' },
  // Out of range
  { name: 'a huge count', body: { prompt: 'ok', count: 1e9 }, status: 400, code: 'VALIDATION_FAILED' },
  { name: 'count 5', body: { prompt: 'ok', count: 5 }, status: 400, code: 'VALIDATION_FAILED' },
  { name: 'count 0', body: { prompt: 'ok', count: 0 }, status: 400, code: 'VALIDATION_FAILED' },
  { name: 'a negative count', body: { prompt: 'ok', count: -1 }, status: 400, code: 'VALIDATION_FAILED' },
  { name: 'paletteSize 13', body: { prompt: 'ok', paletteSize: 13 }, status: 400, code: 'VALIDATION_FAILED' },
  { name: 'an unknown aspect ratio', body: { prompt: 'ok', aspectRatio: '2:1' }, status: 400, code: 'VALIDATION_FAILED' },
  // Unknown fields, including prototype-pollution shapes
  { name: 'an unknown field', body: { prompt: 'ok', seed: 1 }, status: 400, code: 'VALIDATION_FAILED' },
  { name: 'a __proto__ field', body: raw('{"prompt":"ok","__proto__":{"admin":true}}'), status: 400, code: 'VALIDATION_FAILED' },
  { name: 'a constructor field', body: raw('{"prompt":"ok","constructor":{"prototype":{"admin":true}}}'), status: 400, code: 'VALIDATION_FAILED' },
  // Prompts
  { name: 'a missing prompt', body: {}, status: 400, code: 'VALIDATION_FAILED' },
  { name: 'an empty prompt', body: { prompt: '' }, status: 400, code: 'VALIDATION_FAILED' },
  { name: 'a whitespace-only prompt', body: { prompt: ' \n\t\r ' }, status: 400, code: 'VALIDATION_FAILED' },
  { name: 'a 4001-character prompt', body: { prompt: 'x'.repeat(4001) }, status: 400, code: 'VALIDATION_FAILED' },
  { name: 'a NUL character', body: { prompt: 'a cat\u0000' }, status: 400, code: 'VALIDATION_FAILED' },
  { name: 'an ANSI escape sequence', body: { prompt: 'a \u001b[31mred\u001b[0m cat' }, status: 400, code: 'VALIDATION_FAILED' },
  { name: 'a DEL character', body: { prompt: 'a cat\u007f' }, status: 400, code: 'VALIDATION_FAILED' },
  { name: 'a C1 control character', body: { prompt: 'a cat\u009b' }, status: 400, code: 'VALIDATION_FAILED' },
  // Size and encoding of the body
  { name: 'a 100 kB body', body: { prompt: 'ok', padding: 'x'.repeat(100_000) }, status: 413, code: 'PAYLOAD_TOO_LARGE' },
  {
    name: 'a gzip bomb (20 kB that inflates to 20 MB)',
    body: raw(gzipSync(`{"prompt":"${' '.repeat(20_000_000)}"}`), 'application/json', { 'content-encoding': 'gzip' }),
    status: 413,
    code: 'PAYLOAD_TOO_LARGE',
  },
  { name: 'an unknown content encoding', body: raw('{"prompt":"ok"}', 'application/json', { 'content-encoding': 'x-custom' }), status: 415, code: 'UNSUPPORTED_ENCODING' },
  { name: 'a latin1 charset', body: raw('{"prompt":"ok"}', 'application/json; charset=latin1'), status: 415, code: 'UNSUPPORTED_CHARSET' },
  // Depth: 60 kB of brackets would overflow a recursive copy of the body
  { name: 'arrays nested 30 000 deep', body: raw(`{"prompt":"ok","x":${'['.repeat(30_000)}${']'.repeat(30_000)}}`), status: 400, code: 'VALIDATION_FAILED' },
  { name: 'objects nested 10 000 deep', body: raw(`{"prompt":"ok","x":${'{"a":'.repeat(10_000)}1${'}'.repeat(10_000)}}`), status: 400, code: 'VALIDATION_FAILED' },
  { name: 'a deeply nested count', body: raw(`{"prompt":"ok","count":${'['.repeat(30_000)}${']'.repeat(30_000)}}`), status: 400, code: 'VALIDATION_FAILED' },
  // Ids and paths
  ...[
    'not-an-id',
    '..%2F..%2F..%2Fetc%2Fpasswd',
    '%2e%2e',
    `${UNKNOWN_ID}%00`,
    UNKNOWN_ID.toUpperCase(),
    'x'.repeat(5000),
    UNKNOWN_ID,
  ].map((id): Case => ({ name: `GET id ${id.slice(0, 40)}`, method: 'get', path: `${GENERATIONS}/${id}`, status: 404, code: 'GENERATION_NOT_FOUND' })),
  { name: 'events of a traversal id', method: 'get', path: `${GENERATIONS}/..%2F..%2Fetc/events`, status: 404, code: 'GENERATION_NOT_FOUND' },
  { name: 'image of a traversal id', method: 'get', path: `${GENERATIONS}/..%2F..%2Fdata/images/0`, status: 404, code: 'GENERATION_NOT_FOUND' },
  { name: 'cancel of a traversal id', method: 'post', path: `${GENERATIONS}/..%2F..%2Fetc/cancel`, status: 404, code: 'GENERATION_NOT_FOUND' },
  { name: 'cancel of an unknown id', method: 'post', path: `${GENERATIONS}/${UNKNOWN_ID}/cancel`, status: 404, code: 'GENERATION_NOT_FOUND' },
  // Query strings
  { name: 'limit=abc', method: 'get', path: `${GENERATIONS}?limit=abc`, status: 400, code: 'VALIDATION_FAILED' },
  { name: 'limit=-1', method: 'get', path: `${GENERATIONS}?limit=-1`, status: 400, code: 'VALIDATION_FAILED' },
  { name: 'limit=1000000', method: 'get', path: `${GENERATIONS}?limit=1000000`, status: 400, code: 'VALIDATION_FAILED' },
  { name: 'a repeated limit', method: 'get', path: `${GENERATIONS}?limit=1&limit=2`, status: 400, code: 'VALIDATION_FAILED' },
  { name: 'an unknown query parameter', method: 'get', path: `${GENERATIONS}?where=1`, status: 400, code: 'VALIDATION_FAILED' },
  { name: 'a garbage cursor', method: 'get', path: `${GENERATIONS}?cursor=${'%27%3B--'.repeat(10)}`, status: 400, code: 'INVALID_CURSOR' },
  { name: 'a 5000-character cursor', method: 'get', path: `${GENERATIONS}?cursor=${'A'.repeat(5000)}`, status: 400, code: 'VALIDATION_FAILED' },
  { name: 'an array-valued limit', method: 'get', path: `${GENERATIONS}?limit[]=1`, status: 400, code: 'VALIDATION_FAILED' },
  { name: 'a __proto__ query parameter', method: 'get', path: `${GENERATIONS}?__proto__=1`, status: 400, code: 'VALIDATION_FAILED' },
  { name: 'a constructor query parameter', method: 'get', path: `${GENERATIONS}?limit=1&constructor=x`, status: 400, code: 'VALIDATION_FAILED' },
];

/** The bundled Gemini emulator, reached by this file's apps through GEMINI_BASE_URL. */
let testGemini: TestGemini;
beforeAll(async () => {
  testGemini = await startTestGemini();
});
afterAll(async () => {
  await testGemini?.close();
});

/**
 * Hostile input through the real app: each bad request gets its 4xx with a contract error code,
 * never a 500 or a stack trace, and afterwards the process is still live, ready and generating.
 */
describe('Hostile input (e2e)', () => {
  let app: NestExpressApplication;
  let dataDir: string;
  let http: ReturnType<typeof request>;
  let existingId: string;

  beforeAll(async () => {
    dataDir = mkdtempSync(join(tmpdir(), 'his-hostile-'));
    const config = loadConfig({
      ...testGemini.env,
      DATA_DIR: dataDir,
      UPLOAD_TMP_DIR: join(dataDir, 'uploads'),
      METRICS_PORT: '0',
      OTEL_SDK_DISABLED: 'true',
      LOG_LEVEL: 'silent',
      PALETTE_WORKERS: '1',
    });
    app = await createApp(config, { logger: false });
    await app.init();
    http = request(app.getHttpServer());
    existingId = (await http.post(GENERATIONS).set('Prefer', 'wait=30').send({ prompt: 'a teal square' }).expect(201)).body.id;
  });

  afterAll(async () => {
    await app?.close();
    rmSync(dataDir, { recursive: true, force: true });
  });

  /** The contract's error shape, with nothing internal in it. */
  const expectCleanError = (res: request.Response, status: number, code: string) => {
    expect({ status: res.status, code: res.body.code }).toEqual({ status, code });
    expect(Object.keys(res.body).sort()).toEqual(['code', 'message', 'statusCode']);
    expect(res.body.statusCode).toBe(status);
    expect(res.body.message).toEqual(expect.any(String));
    expect(res.body.message).not.toMatch(/\n\s+at |node_modules|\/src\//);
    expect(res.headers['content-type']).toMatch(/^application\/json/);
  };

  it.each(JSON_CASES.map((c) => [c.name, c] as const))('%s', async (_name, c) => {
    const path = c.path ?? GENERATIONS;
    let req = (c.method ?? 'post') === 'get' ? http.get(path) : http.post(path);
    const body = c.body as RawBody | undefined;
    if (body && typeof body === 'object' && 'raw' in body) {
      for (const [name, value] of Object.entries(body.headers ?? {})) req = req.set(name, value);
      // As-is: superagent would otherwise JSON-encode a Buffer sent with a JSON content type.
      req = req.serialize((data: unknown) => data as string).send(body.raw as string);
    } else if (c.body !== undefined) {
      req = req.send(c.body as object);
    }
    expectCleanError(await req, c.status, c.code);
  });

  it('accepts the boundaries the hostile cases sit just outside of', async () => {
    for (const body of [
      { prompt: 'x'.repeat(4000) },
      { prompt: 'two lines\nwith a\ttab', count: 4, paletteSize: 12, aspectRatio: '9:16' },
      { prompt: 'a', count: 1, paletteSize: 1 },
    ]) {
      const res = await http.post(GENERATIONS).send(body);
      expect(res.status).toBe(202);
      await http.post(`${GENERATIONS}/${res.body.id}/cancel`);
    }
  });

  it.each([
    ['a traversal index', '..%2F..%2F..%2Fpackage.json'],
    ['a negative index', '-1'],
    ['an index past the images', '1'],
    ['a huge index', '99999999999999999999'],
    ['a non-numeric index', 'abc'],
  ])('GET an existing generation’s image with %s → 404 IMAGE_NOT_FOUND', async (_name, index) => {
    expectCleanError(await http.get(`${GENERATIONS}/${existingId}/images/${index}`), 404, 'IMAGE_NOT_FOUND');
  });

  describe('POST /api/v1/palettes', () => {
    const post = () => http.post('/api/v1/palettes');

    it.each<[string, number, string, () => Promise<Buffer>]>([
      ['plain text named .png', 415, 'UNSUPPORTED_IMAGE', async () => Buffer.from('definitely not an image')],
      ['an SVG', 415, 'UNSUPPORTED_IMAGE', async () => Buffer.from('<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>')],
      ['a PNG cut in half', 415, 'UNSUPPORTED_IMAGE', async () => truncate(await referenceImage('png', { width: 256, height: 256, noise: 20 }))],
      ['a JPEG cut in half', 415, 'UNSUPPORTED_IMAGE', async () => truncate(await referenceImage('jpeg', { width: 256, height: 256, noise: 20 }))],
      ['a PNG signature and nothing else', 415, 'UNSUPPORTED_IMAGE', async () => (await onePixelPng()).subarray(0, 8)],
      ...Object.entries(svgDisguises()).map(([name, bytes]): [string, number, string, () => Promise<Buffer>] => [name, 415, 'UNSUPPORTED_IMAGE', async () => bytes]),
      ['a tiny PNG declaring 50 000 × 50 000 pixels', 413, 'IMAGE_TOO_LARGE', () => pixelBombPng(50_000)],
      ['a 95-byte interlaced 16-bit PNG declaring 8000 × 8000 pixels (489 MB decoded)', 413, 'IMAGE_TOO_LARGE', () => deepPngBomb(8000, 8000)],
      ['a 43-byte GIF with a 10 000 × 10 000 canvas (382 MB decoded)', 413, 'IMAGE_TOO_LARGE', () => hugeCanvasGif(10_000)],
      ['a 21 MB upload', 413, 'PAYLOAD_TOO_LARGE', async () => Buffer.alloc(21 * 1024 * 1024, 0x89)],
    ])('%s → %i %s', async (_name, status, code, make) => {
      const res = await post().attach('image', await make(), 'upload.png');
      expectCleanError(res, status, code);
      // One fixed text for every unreadable file: nothing of libvips, glib or the decoder's state.
      if (code === 'UNSUPPORTED_IMAGE') expect(res.body.message).toBe(UNSUPPORTED_IMAGE_MESSAGE);
      if (code === 'IMAGE_TOO_LARGE') expect(res.body.message).toMatch(/^The image (has more than 100000000 pixels|is too large to analyse: \d+ × \d+ pixels)/);
    });

    it('an empty file → 400 IMAGE_REQUIRED', async () => {
      expectCleanError(await post().attach('image', Buffer.alloc(0), 'empty.png'), 400, 'IMAGE_REQUIRED');
    });

    it('the image under another field name → 400 INVALID_MULTIPART', async () => {
      expectCleanError(await post().attach('file', await onePixelPng(), 'a.png'), 400, 'INVALID_MULTIPART');
    });

    it('two images → 400 INVALID_MULTIPART', async () => {
      const png = await onePixelPng();
      expectCleanError(await post().attach('image', png, 'a.png').attach('image', png, 'b.png'), 400, 'INVALID_MULTIPART');
    });

    it('a multipart body whose boundary never closes → 400 INVALID_MULTIPART', async () => {
      const res = await post()
        .set('content-type', 'multipart/form-data; boundary=XYZ')
        .send('--XYZ\r\nContent-Disposition: form-data; name="image"; filename="a.png"\r\nContent-Type: image/png\r\n\r\n\x89PNG');
      expectCleanError(res, 400, 'INVALID_MULTIPART');
    });
  });

  it('sends security headers and no framework fingerprint', async () => {
    const res = await http.get('/health/live').expect(200);
    expect(res.headers['x-powered-by']).toBeUndefined();
    expect(res.headers['x-content-type-options']).toBe('nosniff');
    expect(res.headers['x-frame-options']).toBe('SAMEORIGIN');
    expect(res.headers['strict-transport-security']).toMatch(/max-age=\d+/);
    expect(res.headers['content-security-policy']).toContain("default-src 'self'");
    expect(res.headers['referrer-policy']).toBe('no-referrer');
    // CORS is off unless CORS_ORIGINS is set.
    const preflight = await http.options(GENERATIONS).set('Origin', 'https://evil.example').set('Access-Control-Request-Method', 'POST');
    expect(preflight.headers['access-control-allow-origin']).toBeUndefined();
  });

  it('is still live, ready and generating after all of the above', async () => {
    await http.get('/health/live').expect(200);
    const ready = await http.get('/health/ready').expect(200);
    expect(ready.body.status).toBe('ok');
    const g = await http.post(GENERATIONS).set('Prefer', 'wait=30').send({ prompt: 'a purple triangle' }).expect(201);
    expect(g.body.status).toBe('succeeded');
    const palette = await http.post('/api/v1/palettes').attach('image', await referenceImage('png', { width: 64, height: 64 }), 'a.png').expect(200);
    expect(palette.body.colors.length).toBeGreaterThan(0);
  });
});
