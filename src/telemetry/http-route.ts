import type { ServerResponse } from 'node:http';
import { context as otelContext } from '@opentelemetry/api';
import { getRPCMetadata, RPCType } from '@opentelemetry/core';

/** What Express leaves on a request that matched a route. */
export interface RoutedRequest {
  baseUrl?: string;
  route?: { path?: unknown };
}

/**
 * A route path that matches every path: `{/*splat}`, `*path`, `/{*rest}`… Express leaves such a
 * "route" on requests that no handler matched: nestjs-pino's middleware is mounted on `{/*splat}`
 * (and Nest's 404 handler under a prefix on `*path`), and `req.route` keeps the last route layer
 * that ran. It names no route of the API.
 */
const WILDCARD_ONLY = /^\{?\/?\{?\*\w*\}?\}?$/;

/**
 * Express's matched route path (a template like `/api/v1/generations/:id`), mount path included;
 * undefined when no route of the API matched (the HTTP semantic conventions then omit `http.route`).
 */
export function routeTemplate(request: RoutedRequest | undefined): string | undefined {
  const path = request?.route?.path;
  if (typeof path !== 'string' || WILDCARD_ONLY.test(path)) return undefined;
  return `${request?.baseUrl ?? ''}${path}` || '/';
}

/**
 * The HTTP instrumentation's `responseHook`: once the response is finished, and if nothing named
 * the route yet, takes it from Express (`req.route`) and hands it to the instrumentation through
 * its RPC metadata, which labels `http.server.request.duration` with `http.route` on `close`.
 * `HttpSpanInterceptor` names the route for every handler that runs; this covers requests that
 * never reach an interceptor but did match a route: rejected by a guard (401, 429) or served by
 * plain Express routes (Swagger UI). Without span export, `httpServerDurationMiddleware` reads
 * `routeTemplate(req)` on `close` instead.
 */
export function captureRouteOnFinish(response: ServerResponse): void {
  const rpc = getRPCMetadata(otelContext.active());
  if (rpc?.type !== RPCType.HTTP) return;
  response.once('finish', () => {
    if (rpc.route !== undefined) return;
    const route = routeTemplate((response as ServerResponse & { req?: RoutedRequest }).req);
    if (route) rpc.route = route;
  });
}
