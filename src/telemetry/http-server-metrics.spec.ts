import { EventEmitter } from 'node:events';
import type { ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { CanActivate, Controller, Get, HttpCode, Injectable, Param, Post, Res, UnauthorizedException, UseGuards } from '@nestjs/common';
import type { NestExpressApplication } from '@nestjs/platform-express';
import { Test } from '@nestjs/testing';
import type { Histogram } from '@opentelemetry/sdk-metrics';
import type { Response } from 'express';
import { loadConfig } from '../config/app-config';
import { httpServerDurationMiddleware, Middleware, requestAttributes } from './http-server-metrics';
import { httpServerDurationSource } from './http-server-policy';
import { HTTP_SECONDS_BUCKETS, metricViews } from './metric-views';
import { installTestTelemetry, TestTelemetry } from './testing';

const METRIC = 'http.server.request.duration';
const ON_REQUEST = { 'http.request.method': 'GET', 'url.scheme': 'http', 'network.protocol.version': '1.1' };

@Injectable()
class DenyGuard implements CanActivate {
  canActivate(): boolean {
    throw new UnauthorizedException();
  }
}

@Controller('api/v1/items')
class ItemsController {
  @Get(':id')
  get(@Param('id') id: string): { id: string } {
    return { id };
  }

  @Post()
  @HttpCode(201)
  create(): { ok: true } {
    return { ok: true };
  }

  @Get(':id/broken')
  broken(): never {
    throw new Error('boom');
  }

  @Get(':id/secret')
  @UseGuards(DenyGuard)
  secret(): string {
    return 'never';
  }

  /** Like an SSE stream: headers out, the body never ends until the client leaves. */
  @Get(':id/stream')
  stream(@Res() res: Response): void {
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    res.write(': open\n\n');
  }
}

@Controller()
class ProbesController {
  @Get('health/live')
  live(): { status: string } {
    return { status: 'ok' };
  }

  @Get('metrics')
  metrics(): string {
    return '';
  }

  @Get('v1/models/:model')
  emulator(): string {
    return '{}';
  }
}

describe('httpServerDurationSource', () => {
  it('is the middleware without an OTLP endpoint, the instrumentation with one, nothing when off', () => {
    expect(httpServerDurationSource(loadConfig({}))).toBe('middleware');
    expect(httpServerDurationSource(loadConfig({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://127.0.0.1:4318' }))).toBe('instrumentation');
    expect(httpServerDurationSource(loadConfig({ OTEL_SDK_DISABLED: 'true', OTEL_EXPORTER_OTLP_ENDPOINT: 'http://127.0.0.1:4318' }))).toBe('none');
  });
});

describe('requestAttributes', () => {
  it('normalizes the method as semconv does and reads scheme and protocol version from the request', () => {
    const req = (method: string | undefined, encrypted?: boolean, httpVersion = '1.1') =>
      requestAttributes({ method, httpVersion, socket: { encrypted } } as never);
    expect(req('get')).toEqual(ON_REQUEST);
    expect(req('PROPFIND')['http.request.method']).toBe('_OTHER');
    expect(req(undefined)['http.request.method']).toBe('GET');
    expect(req('POST', true, '2.0')).toEqual({ 'http.request.method': 'POST', 'url.scheme': 'https', 'network.protocol.version': '2.0' });
    expect(req('GET', false, '')).not.toHaveProperty('network.protocol.version');
  });
});

describe('httpServerDurationMiddleware in a Nest app', () => {
  let telemetry: TestTelemetry;
  let app: NestExpressApplication;
  let base: string;

  beforeEach(async () => {
    // The service's views: the buckets must come out as they do on /metrics.
    telemetry = installTestTelemetry({ views: metricViews() });
    const moduleRef = await Test.createTestingModule({ controllers: [ItemsController, ProbesController], providers: [DenyGuard] }).compile();
    app = moduleRef.createNestApplication<NestExpressApplication>({ logger: false });
    app.use(httpServerDurationMiddleware());
    await app.listen(0, '127.0.0.1');
    base = `http://127.0.0.1:${(app.getHttpServer().address() as AddressInfo).port}`;
  });
  afterEach(async () => {
    await app.close();
    await telemetry.uninstall();
  });

  /** Answers the status once the body was read (the response has closed on the server by then or soon after). */
  const get = async (path: string, init?: RequestInit) => {
    const res = await fetch(`${base}${path}`, init);
    await res.arrayBuffer();
    return res.status;
  };
  const points = async () => (await telemetry.points(METRIC)).map((p) => ({ attributes: p.attributes, count: (p.value as Histogram).count }));
  /** The samples once `total` requests were recorded: the server's `close` can trail the client's last byte. */
  const recorded = async (total: number) => {
    for (let i = 0; i < 50; i++) {
      const current = await points();
      if (current.reduce((sum, p) => sum + p.count, 0) >= total) return current;
      await new Promise((r) => setTimeout(r, 20));
    }
    return points();
  };

  it('records one sample per request with the instrumentation’s attributes and the route template, never the raw path', async () => {
    expect(await get('/api/v1/items/it_42')).toBe(200);
    expect(await get('/api/v1/items/it_43')).toBe(200);
    expect(await get('/api/v1/items', { method: 'POST' })).toBe(201);

    expect(await recorded(3)).toEqual(
      expect.arrayContaining([
        { attributes: { ...ON_REQUEST, 'http.route': '/api/v1/items/:id', 'http.response.status_code': 200 }, count: 2 },
        { attributes: { ...ON_REQUEST, 'http.request.method': 'POST', 'http.route': '/api/v1/items', 'http.response.status_code': 201 }, count: 1 },
      ]),
    );
    expect(await points()).toHaveLength(2);
    expect(JSON.stringify(await points())).not.toContain('it_4');
  });

  it('is a histogram in seconds with the service’s HTTP buckets', async () => {
    await get('/api/v1/items/a');
    await recorded(1);
    const metric = await telemetry.metric(METRIC);
    expect(metric?.descriptor).toMatchObject({ name: METRIC, unit: 's', description: 'Duration of HTTP server requests.' });
    const value = metric?.dataPoints[0].value as Histogram;
    expect(value.buckets.boundaries).toEqual(HTTP_SECONDS_BUCKETS);
    expect(value.sum).toBeGreaterThan(0);
  });

  it('labels a request a guard rejected with its route, and a 5xx with error.type', async () => {
    expect(await get('/api/v1/items/x/secret')).toBe(401);
    expect(await get('/api/v1/items/x/broken')).toBe(500);

    expect(await recorded(2)).toEqual(
      expect.arrayContaining([
        { attributes: { ...ON_REQUEST, 'http.route': '/api/v1/items/:id/secret', 'http.response.status_code': 401 }, count: 1 },
        {
          attributes: { ...ON_REQUEST, 'http.route': '/api/v1/items/:id/broken', 'http.response.status_code': 500, 'error.type': '500' },
          count: 1,
        },
      ]),
    );
    expect(await points()).toHaveLength(2);
  });

  it('skips probes, scrapes and the in-process emulator', async () => {
    for (const path of ['/health/live', '/metrics', '/v1/models/gemini-2.5-flash-image:generateContent']) expect(await get(path)).toBe(200);
    await get('/api/v1/items/a');
    // The API request came last: once it is in, the skipped ones would have been too.
    expect((await recorded(1)).map((p) => p.attributes['http.route'])).toEqual(['/api/v1/items/:id']);
  });

  it('records a stream the client left, with the status it had', async () => {
    const controller = new AbortController();
    const res = await fetch(`${base}/api/v1/items/a/stream`, { signal: controller.signal });
    expect(res.status).toBe(200);
    expect(await points()).toEqual([]);
    controller.abort();
    expect(await recorded(1)).toEqual([{ attributes: { ...ON_REQUEST, 'http.route': '/api/v1/items/:id/stream', 'http.response.status_code': 200 }, count: 1 }]);
  });
});

describe('httpServerDurationMiddleware on a response error', () => {
  let telemetry: TestTelemetry;
  beforeEach(() => {
    telemetry = installTestTelemetry({ views: metricViews() });
  });
  afterEach(() => telemetry.uninstall());

  it('records once, with error.type = the error’s name and neither status nor route (as the instrumentation does)', async () => {
    const middleware: Middleware = httpServerDurationMiddleware();
    const req = { method: 'GET', url: '/api/v1/items/a', httpVersion: '1.1', socket: {}, baseUrl: '', route: { path: '/api/v1/items/:id' } };
    const res = Object.assign(new EventEmitter(), { statusCode: 200 });
    // Node's own error handling on the socket; without a listener the emit below would throw.
    res.on('error', () => undefined);
    const next = jest.fn();
    middleware(req as never, res as unknown as ServerResponse, next);
    expect(next).toHaveBeenCalledTimes(1);

    res.emit('error', new TypeError('write after end'));
    res.emit('close');

    const points = await telemetry.points(METRIC);
    expect(points.map((p) => [p.attributes, (p.value as Histogram).count])).toEqual([[{ ...ON_REQUEST, 'error.type': 'TypeError' }, 1]]);
  });
});
