import { errorMonitor } from 'node:events';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { TLSSocket } from 'node:tls';
import { Attributes, Meter, metrics, ValueType } from '@opentelemetry/api';
import {
  ATTR_ERROR_TYPE,
  ATTR_HTTP_REQUEST_METHOD,
  ATTR_HTTP_RESPONSE_STATUS_CODE,
  ATTR_HTTP_ROUTE,
  ATTR_NETWORK_PROTOCOL_VERSION,
  ATTR_URL_SCHEME,
  METRIC_HTTP_SERVER_REQUEST_DURATION,
} from '@opentelemetry/semantic-conventions';
import { INSTRUMENTATION_SCOPE } from './app-metrics';
import { RoutedRequest, routeTemplate } from './http-route';
import { HTTP_SECONDS_BUCKETS } from './metric-views';
import { isUntracedRequest } from './http-server-policy';

/** The methods semconv names; any other becomes `_OTHER` (bounded cardinality), as in instrumentation-http. */
const KNOWN_METHODS = new Set(['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'CONNECT', 'OPTIONS', 'TRACE', 'PATCH', 'QUERY']);

function normalizeMethod(method: string | undefined): string {
  if (method === undefined) return 'GET';
  const upper = method.toUpperCase();
  return KNOWN_METHODS.has(upper) ? upper : '_OTHER';
}

type Request = IncomingMessage & RoutedRequest;

/** Known when the request arrives: method, scheme and protocol version. */
export function requestAttributes(req: Request): Attributes {
  const attributes: Attributes = {
    [ATTR_HTTP_REQUEST_METHOD]: normalizeMethod(req.method),
    [ATTR_URL_SCHEME]: (req.socket as TLSSocket | undefined)?.encrypted ? 'https' : 'http',
  };
  if (req.httpVersion) attributes[ATTR_NETWORK_PROTOCOL_VERSION] = req.httpVersion;
  return attributes;
}

/**
 * The attributes instrumentation-http 0.301 gives a request whose response closed: the request's
 * (`requestAttributes`), the route template Express matched (also when a guard answered before
 * any handler ran), the status code, and `error.type` = the status code for 5xx.
 */
export function responseAttributes(onRequest: Attributes, req: RoutedRequest, res: Pick<ServerResponse, 'statusCode'>): Attributes {
  const attributes = { ...onRequest };
  const route = routeTemplate(req);
  if (route !== undefined) attributes[ATTR_HTTP_ROUTE] = route;
  const status = res.statusCode;
  if (status) {
    attributes[ATTR_HTTP_RESPONSE_STATUS_CODE] = status;
    if (status >= 500 && status < 600) attributes[ATTR_ERROR_TYPE] = String(status);
  }
  return attributes;
}

export type Middleware = (req: Request, res: ServerResponse, next: () => void) => void;

/**
 * Express middleware (register it first) that records `http.server.request.duration` (seconds,
 * the buckets of `metricViews()`) with the attributes instrumentation-http would give it: on
 * `close` (finished, or aborted by the client: an SSE stream that was left), or on a response
 * error, then with `error.type` = the error's name and no status or route, as the
 * instrumentation does. Probes, scrapes and the in-process emulator are skipped
 * (`isUntracedRequest`). No span, no context: that is where the instrumentation's cost was.
 * The meter is taken when this is called, so call it after `startTelemetry()`.
 */
export function httpServerDurationMiddleware(meter: Meter = metrics.getMeter(INSTRUMENTATION_SCOPE)): Middleware {
  const histogram = meter.createHistogram(METRIC_HTTP_SERVER_REQUEST_DURATION, {
    description: 'Duration of HTTP server requests.',
    unit: 's',
    valueType: ValueType.DOUBLE,
    advice: { explicitBucketBoundaries: HTTP_SECONDS_BUCKETS },
  });
  return function httpServerDuration(req, res, next) {
    if (isUntracedRequest(req.url)) {
      next();
      return;
    }
    const start = performance.now();
    const onRequest = requestAttributes(req);
    let recorded = false;
    const record = (attributes: Attributes) => {
      if (recorded) return;
      recorded = true;
      histogram.record((performance.now() - start) / 1000, attributes);
    };
    // `on`, not `once` (no wrapper per request): `recorded` keeps it to one sample anyway.
    res.on(errorMonitor, (error: Error) => record({ ...onRequest, [ATTR_ERROR_TYPE]: error.name }));
    res.on('close', () => record(responseAttributes(onRequest, req, res)));
    next();
  };
}
