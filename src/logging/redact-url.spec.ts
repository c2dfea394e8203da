import { createServer, Server } from 'node:http';
import { AddressInfo } from 'node:net';
import { Writable } from 'node:stream';
import express from 'express';
import { pinoHttp } from 'pino-http';
import { incomingSpanAttributes } from '../telemetry';
import { pinoHttpOptions } from './pino-options';
import { isCredentialParam, redactQueryObject, redactUrl } from './redact-url';

describe('redactUrl', () => {
  it.each([
    ['/api/v1/generations?api_key=s3cr3t', '/api/v1/generations?api_key=[redacted]'],
    ['/x?limit=5&API_KEY=s3cr3t&cursor=abc', '/x?limit=5&API_KEY=[redacted]&cursor=abc'],
    ['/x?apikey=a&api-key=b&apiKey=c&x-api-key=d&key=e', '/x?apikey=[redacted]&api-key=[redacted]&apiKey=[redacted]&x-api-key=[redacted]&key=[redacted]'],
    ['/x?token=a&access_token=b&refresh_token=c&id_token=d', '/x?token=[redacted]&access_token=[redacted]&refresh_token=[redacted]&id_token=[redacted]'],
    ['/x?password=a&client_secret=b&auth=c&sig=d', '/x?password=[redacted]&client_secret=[redacted]&auth=[redacted]&sig=[redacted]'],
    ['/x?X-Amz-Signature=a&X-Amz-Credential=b&X-Amz-Security-Token=c', '/x?X-Amz-Signature=[redacted]&X-Amz-Credential=[redacted]&X-Amz-Security-Token=[redacted]'],
    // Percent-encoded or `+`-spaced names are decoded before they are judged.
    ['/x?api%5Fkey=s3cr3t&access%5ftoken=t', '/x?api%5Fkey=[redacted]&access%5ftoken=[redacted]'],
    // Repeated and value-less parameters
    ['/x?key=a&key=b&token', '/x?key=[redacted]&key=[redacted]&token=[redacted]'],
    // Nothing to redact: left byte for byte
    ['/api/v1/generations?limit=20&cursor=eyJ0Ijo%3D', '/api/v1/generations?limit=20&cursor=eyJ0Ijo%3D'],
    ['/api/v1/generations', '/api/v1/generations'],
    ['/x?', '/x?'],
    ['/x?%E0%A4%A=1', '/x?%E0%A4%A=1'],
  ])('%s → %s', (url, expected) => {
    expect(redactUrl(url)).toBe(expected);
  });

  it('judges names, not values, and leaves ordinary parameters alone', () => {
    for (const name of ['limit', 'cursor', 'q', 'kind', 'color', 'similarTo', 'monkey', 'keyboard']) expect(isCredentialParam(name)).toBe(false);
    expect(redactUrl('/x?q=my+api_key%3Dsecret')).toBe('/x?q=my+api_key%3Dsecret');
  });

  it('redacts a parsed query object', () => {
    expect(redactQueryObject({ limit: '5', api_key: 's', token: ['a', 'b'] })).toEqual({ limit: '5', api_key: '[redacted]', token: '[redacted]' });
    expect(redactQueryObject(undefined)).toBeUndefined();
  });

  it('gives server spans a redacted url.query, and none without a query', () => {
    expect(incomingSpanAttributes('/api/v1/generations?limit=2&access_token=abc')).toEqual({ 'url.query': 'limit=2&access_token=[redacted]' });
    expect(incomingSpanAttributes('/api/v1/generations')).toEqual({});
  });
});

describe('request log lines of an Express app', () => {
  let server: Server;
  let base: string;
  const chunks: string[] = [];
  const lines = () =>
    chunks
      .join('')
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as { msg: string; req: { url: string; query: Record<string, unknown> } });

  beforeAll(async () => {
    const stream = new Writable({
      write(chunk: Buffer, _enc, done) {
        chunks.push(chunk.toString());
        done();
      },
    });
    // Express, as in the service: it sets `originalUrl` and a parsed `query`, both of which pino logs.
    const app = express();
    app.use(pinoHttp(pinoHttpOptions({ logLevel: 'info' }), stream));
    app.get('/api/v1/generations', (req, res) => {
      req.log.info('inside the handler');
      res.json({ ok: true });
    });
    server = createServer(app);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

  it('never writes a key sent in the query string', async () => {
    const res = await fetch(`${base}/api/v1/generations?limit=5&api_key=query-secret-1&Access_Token=query-secret-2`);
    expect(res.status).toBe(200);

    expect(chunks.join('')).not.toMatch(/query-secret/);
    const [inside, completed] = lines();
    for (const line of [inside, completed]) {
      expect(line.req.url).toBe('/api/v1/generations?limit=5&api_key=[redacted]&Access_Token=[redacted]');
      expect(line.req.query).toEqual({ limit: '5', api_key: '[redacted]', Access_Token: '[redacted]' });
    }
    expect(completed.msg).toBe('request completed');
  });
});
