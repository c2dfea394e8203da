import { CallHandler, ExecutionContext } from '@nestjs/common';
import { context, ROOT_CONTEXT, SpanKind, trace } from '@opentelemetry/api';
import { getRPCMetadata, RPCMetadata, RPCType, setRPCMetadata } from '@opentelemetry/core';
import { lastValueFrom, of } from 'rxjs';
import { HttpSpanInterceptor } from './http-span.interceptor';
import { installTestTelemetry, TestTelemetry } from './testing';

class GenerationsController {
  get(): void {}
}

function httpContext(request: object): ExecutionContext {
  return {
    getType: () => 'http',
    getClass: () => GenerationsController,
    getHandler: () => GenerationsController.prototype.get,
    switchToHttp: () => ({ getRequest: () => request }),
  } as unknown as ExecutionContext;
}

describe('HttpSpanInterceptor', () => {
  let telemetry: TestTelemetry;
  const next: CallHandler = { handle: () => of('result') };

  beforeEach(() => {
    telemetry = installTestTelemetry();
  });
  afterEach(() => telemetry.uninstall());

  /** What the HTTP instrumentation sets up for an incoming request: a server span in RPC metadata. */
  function inServerSpan(fn: (rpc: RPCMetadata) => void): void {
    const span = trace.getTracer('test').startSpan('GET', { kind: SpanKind.SERVER });
    const rpc: RPCMetadata = { type: RPCType.HTTP, span };
    context.with(setRPCMetadata(trace.setSpan(ROOT_CONTEXT, span), rpc), () => fn(rpc));
    span.end();
  }

  it('names the server span after the route template and tags it with route and handler', async () => {
    const interceptor = new HttpSpanInterceptor();
    let route: string | undefined;
    inServerSpan((rpc) => {
      const request = { method: 'GET', baseUrl: '', route: { path: '/api/v1/generations/:id' }, url: '/api/v1/generations/gen_123' };
      void lastValueFrom(interceptor.intercept(httpContext(request), next));
      route = rpc.route;
    });

    // The route reaches the HTTP instrumentation, which labels http.server.request.duration with it.
    expect(route).toBe('/api/v1/generations/:id');
    const [span] = telemetry.spans();
    expect(span.name).toBe('GET /api/v1/generations/:id');
    expect(span.attributes).toMatchObject({
      'http.route': '/api/v1/generations/:id',
      'code.function.name': 'GenerationsController.get',
      'nestjs.controller': 'GenerationsController',
      'nestjs.callback': 'get',
    });
    expect(JSON.stringify(span.attributes)).not.toContain('gen_123');
  });

  it('passes the handler result through untouched', async () => {
    const interceptor = new HttpSpanInterceptor();
    let result: Promise<unknown> = Promise.resolve();
    inServerSpan(() => {
      result = lastValueFrom(interceptor.intercept(httpContext({ method: 'POST', route: { path: '/x' } }), next));
    });
    await expect(result).resolves.toBe('result');
  });

  it('does nothing outside an instrumented HTTP request (telemetry off)', async () => {
    const interceptor = new HttpSpanInterceptor();
    expect(getRPCMetadata(context.active())).toBeUndefined();
    await expect(lastValueFrom(interceptor.intercept(httpContext({ method: 'GET', route: { path: '/x' } }), next))).resolves.toBe('result');
    expect(telemetry.spans()).toHaveLength(0);
  });

  it('falls back to the handler name when Express matched no route', () => {
    const interceptor = new HttpSpanInterceptor();
    let route: string | undefined = 'unset';
    inServerSpan((rpc) => {
      void lastValueFrom(interceptor.intercept(httpContext({ method: 'GET', url: '/nowhere/42' }), next));
      route = rpc.route;
    });
    expect(route).toBeUndefined();
    expect(telemetry.spans()[0].name).toBe('GET GenerationsController.get');
  });
});
