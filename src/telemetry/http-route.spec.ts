import { EventEmitter } from 'node:events';
import type { ServerResponse } from 'node:http';
import { context, ROOT_CONTEXT, trace } from '@opentelemetry/api';
import { RPCMetadata, RPCType, setRPCMetadata } from '@opentelemetry/core';
import { captureRouteOnFinish, routeTemplate } from './http-route';
import { installTestTelemetry, TestTelemetry } from './testing';

describe('routeTemplate', () => {
  it('joins a sub-router mount path and the route path', () => {
    expect(routeTemplate({ baseUrl: '/api', route: { path: '/items/:id' } })).toBe('/api/items/:id');
    expect(routeTemplate({ baseUrl: '', route: { path: '/' } })).toBe('/');
    expect(routeTemplate({ baseUrl: '' })).toBeUndefined();
    expect(routeTemplate(undefined)).toBeUndefined();
  });
});

describe('captureRouteOnFinish', () => {
  let telemetry: TestTelemetry;
  beforeEach(() => {
    telemetry = installTestTelemetry();
  });
  afterEach(() => telemetry.uninstall());

  function respond(req: object, presetRoute?: string): RPCMetadata {
    const span = trace.getTracer('test').startSpan('GET');
    const rpc: RPCMetadata = { type: RPCType.HTTP, span, route: presetRoute };
    const response = Object.assign(new EventEmitter(), { req }) as unknown as ServerResponse;
    context.with(setRPCMetadata(trace.setSpan(ROOT_CONTEXT, span), rpc), () => captureRouteOnFinish(response));
    // The route may only be read once the response is finished (Express matched it by then).
    expect(rpc.route).toBe(presetRoute);
    response.emit('finish');
    return rpc;
  }

  it('takes the Express route of a request no handler named (a guard answered 401)', () => {
    expect(respond({ baseUrl: '', route: { path: '/api/v1/generations/:id' } }).route).toBe('/api/v1/generations/:id');
  });

  it('keeps a route the interceptor already set, and sets none for unmatched paths', () => {
    expect(respond({ baseUrl: '', route: { path: '/other' } }, '/api/v1/generations').route).toBe('/api/v1/generations');
    expect(respond({ baseUrl: '' }).route).toBeUndefined();
  });

  it('does nothing outside an instrumented request', () => {
    const response = new EventEmitter() as unknown as ServerResponse;
    captureRouteOnFinish(response);
    expect(response.listenerCount('finish')).toBe(0);
  });
});
