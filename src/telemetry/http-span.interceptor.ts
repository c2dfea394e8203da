import { CallHandler, ExecutionContext, Injectable, NestInterceptor } from '@nestjs/common';
import { context as otelContext } from '@opentelemetry/api';
import { getRPCMetadata, RPCType } from '@opentelemetry/core';
import { ATTR_CODE_FUNCTION_NAME, ATTR_HTTP_ROUTE } from '@opentelemetry/semantic-conventions';
import type { Request } from 'express';
import { Observable } from 'rxjs';
import { routeTemplate } from './http-route';

/**
 * Gives each request's HTTP server span its route: `http.route` (the template, e.g.
 * `/api/v1/generations/:id`, never the raw URL with ids), `code.function.name`
 * (`GenerationsController.get`), and the name `METHOD /route`. The same route is handed to the
 * HTTP instrumentation through its RPC metadata, which is where the `http.route` attribute of
 * `http.server.request.duration` comes from (`captureRouteOnFinish` covers requests a guard
 * rejected before any interceptor ran). All this only when spans are exported: otherwise the
 * instrumentation does not see incoming requests, there is no server span, and this does nothing
 * (`httpServerDurationMiddleware` reads the route from Express itself).
 *
 * The server span is the one the HTTP instrumentation put into the RPC metadata; it is taken from
 * there rather than from the active span so that a child span started before the handler
 * (a `@Span()` on a guard, a future Express/Nest instrumentation) cannot receive these attributes.
 */
@Injectable()
export class HttpSpanInterceptor implements NestInterceptor {
  intercept(ctx: ExecutionContext, next: CallHandler): Observable<unknown> {
    if (ctx.getType() !== 'http') return next.handle();
    const rpc = getRPCMetadata(otelContext.active());
    if (rpc?.type !== RPCType.HTTP) return next.handle();

    const request = ctx.switchToHttp().getRequest<Request>();
    const route = routeTemplate(request);
    const handler = `${ctx.getClass().name}.${ctx.getHandler().name}`;
    if (route) rpc.route = route;
    rpc.span.setAttributes({
      ...(route ? { [ATTR_HTTP_ROUTE]: route } : {}),
      [ATTR_CODE_FUNCTION_NAME]: handler,
      'nestjs.controller': ctx.getClass().name,
      'nestjs.callback': ctx.getHandler().name,
    });
    rpc.span.updateName(`${request.method} ${route ?? handler}`);
    return next.handle();
  }
}
