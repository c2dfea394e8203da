import { ConfigError, loadConfig } from './app-config';

describe('loadConfig: listen address and connection limits', () => {
  it('defaults: all IPv4 interfaces, 60 s per request (10 s for headers), 5 s keep-alive, 20 streams per client, 2000 in all', () => {
    const c = loadConfig({});
    expect(c.host).toBe('0.0.0.0');
    expect(c.http).toMatchObject({ requestTimeoutMs: 60_000, headersTimeoutMs: 10_000, keepAliveTimeoutMs: 5_000 });
    expect(c.eventStreams).toEqual({ maxPerClient: 20, maxTotal: 2_000 });
  });

  it('reads them from the environment; the headers timeout never exceeds the request timeout', () => {
    const c = loadConfig({
      HOST: '::1',
      HTTP_REQUEST_TIMEOUT_MS: '300',
      HTTP_KEEP_ALIVE_TIMEOUT_MS: '65000',
      SSE_MAX_STREAMS_PER_CLIENT: '2',
      SSE_MAX_STREAMS: '3',
    });
    expect(c.host).toBe('::1');
    expect(c.http).toMatchObject({ requestTimeoutMs: 300, headersTimeoutMs: 300, keepAliveTimeoutMs: 65_000 });
    expect(c.eventStreams).toEqual({ maxPerClient: 2, maxTotal: 3 });
    for (const host of ['127.0.0.1', 'localhost', 'api.internal', '::']) expect(loadConfig({ HOST: host }).host).toBe(host);
  });

  it('names each bad value', () => {
    let error: unknown;
    try {
      loadConfig({ HOST: 'http://0.0.0.0', HTTP_REQUEST_TIMEOUT_MS: '0', HTTP_KEEP_ALIVE_TIMEOUT_MS: 'soon', SSE_MAX_STREAMS_PER_CLIENT: '0', SSE_MAX_STREAMS: '-1' });
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(ConfigError);
    for (const name of ['HOST', 'HTTP_REQUEST_TIMEOUT_MS', 'HTTP_KEEP_ALIVE_TIMEOUT_MS', 'SSE_MAX_STREAMS_PER_CLIENT', 'SSE_MAX_STREAMS']) {
      expect((error as ConfigError).problems.some((p) => p.startsWith(`${name}:`))).toBe(true);
    }
  });
});
