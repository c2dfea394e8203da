import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { fetchWithFastJson } from './gemini.client';

describe('fetchWithFastJson', () => {
  let server: Server;
  let url: string;
  const bodies: Record<string, Buffer> = {
    '/plain': Buffer.from(JSON.stringify({ candidates: [{ content: { parts: [{ inlineData: { mimeType: 'image/png', data: 'iVBORw0KGgo='.repeat(5000) } }] } }] })),
    '/unicode': Buffer.from(JSON.stringify({ text: 'crème brûlée 🍮 ✓ \u2028 "quoted" \\ back' })),
    '/bom': Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from('{"a":1}')]),
    '/malformed': Buffer.concat([Buffer.from('{"t":"a'), Buffer.from([0xff, 0xc3]), Buffer.from('b"}')]),
    '/invalid': Buffer.from('{"a":'),
    '/empty': Buffer.alloc(0),
  };

  beforeAll(async () => {
    server = createServer((req, res) => {
      res.setHeader('content-type', 'application/json');
      // One byte at a time for /split: multi-byte characters arrive cut across chunks.
      const body = bodies[req.url ?? ''] ?? bodies['/unicode'];
      if (req.url !== '/split') return void res.end(body);
      let i = 0;
      const next = () => (i < body.length ? res.write(body.subarray(i, ++i), () => setImmediate(next)) : res.end());
      next();
    });
    await new Promise<void>((done) => server.listen(0, '127.0.0.1', done));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(() => new Promise<void>((done) => server.close(() => done())));

  it.each(['/plain', '/unicode', '/split', '/bom', '/malformed'])('json() gives what Response.json() gives for %s', async (path) => {
    const expected: unknown = await (await fetch(`${url}${path}`)).json();
    const response = await fetchWithFastJson(`${url}${path}`);
    expect(response.ok).toBe(true);
    expect(await response.json()).toEqual(expected);
  });

  it("sends each request with undici's own header and body timeouts off, as the SDK does (GEMINI_TIMEOUT_MS is the deadline)", async () => {
    const key = Symbol.for('undici.globalDispatcher.1');
    const globals = globalThis as unknown as Record<symbol, { dispatch(o: Record<string, unknown>, h: unknown): boolean }>;
    const real = globals[key];
    const seen: Record<string, unknown>[] = [];
    globals[key] = { dispatch: (o, h) => (seen.push(o), real.dispatch(o, h)) };
    try {
      expect(await (await fetchWithFastJson(`${url}/plain`)).json()).toBeDefined();
    } finally {
      globals[key] = real;
    }
    expect(seen).toHaveLength(1);
    expect(seen[0]).toMatchObject({ headersTimeout: 0, bodyTimeout: 0 });
  });

  it('rejects invalid JSON with a SyntaxError, like Response.json()', async () => {
    await expect((await fetch(`${url}/invalid`)).json()).rejects.toMatchObject({ name: 'SyntaxError' });
    await expect((await fetchWithFastJson(`${url}/invalid`)).json()).rejects.toMatchObject({ name: 'SyntaxError' });
    await expect((await fetchWithFastJson(`${url}/empty`)).json()).rejects.toMatchObject({ name: 'SyntaxError' });
  });

  it('leaves the rest of the Response alone: a body read once cannot be read again', async () => {
    const response = await fetchWithFastJson(`${url}/bom`);
    expect(response.headers.get('content-type')).toBe('application/json');
    await response.json();
    await expect(response.json()).rejects.toMatchObject({ name: 'TypeError' });
    // (errors from Node's own realm: compared by name, not by Jest's constructors)
    await expect(response.text()).rejects.toMatchObject({ name: 'TypeError', message: expect.stringMatching(/already been read/) });
  });
});
