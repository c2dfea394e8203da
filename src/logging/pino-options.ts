import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { stdTimeFunctions } from 'pino';
import type { Options } from 'pino-http';
import type { AppConfig } from '../config/app-config';
import { redactQueryObject, redactUrl } from './redact-url';
import { traceFields } from './trace-context';

/** Header values that must never reach a log line. */
export const REDACTED_PATHS = [
  'req.headers.authorization',
  'req.headers["proxy-authorization"]',
  'req.headers["x-api-key"]',
  'req.headers.cookie',
  'res.headers["set-cookie"]',
];

/** Probes and scrapes run every few seconds; a line each would drown the useful ones. */
const QUIET_PATHS = ['/health/live', '/health/ready', '/metrics'];

const REQUEST_ID = /^[\w.:-]{1,128}$/;

/**
 * pino-http options for the whole service: JSON lines at `config.logLevel`, each carrying the
 * active span's `trace_id`/`span_id` when there is one (`traceFields`), one line per finished request (method, url, status,
 * duration; never bodies), credentials redacted: the headers above, and credential-like query
 * parameters (`?api_key=…`, `?token=…`: see `redactUrl`) in the logged url and query.
 */
export function pinoHttpOptions(config: Pick<AppConfig, 'logLevel'>): Options<IncomingMessage, ServerResponse> {
  return {
    level: config.logLevel,
    timestamp: stdTimeFunctions.isoTime,
    formatters: { level: (label) => ({ level: label }) },
    mixin: () => traceFields(),
    redact: { paths: REDACTED_PATHS, censor: '[redacted]' },
    // A caller's own correlation id is kept when it looks like one; anything else is replaced,
    // so a hostile header cannot inject arbitrary text into every line of the request.
    genReqId: (req, res) => {
      const incoming = req.headers['x-request-id'];
      const id = typeof incoming === 'string' && REQUEST_ID.test(incoming) ? incoming : randomUUID();
      res.setHeader('X-Request-Id', id);
      return id;
    },
    serializers: {
      // `params` is the middleware's own wildcard match (`splat`), not the route's parameters.
      req: ({ params: _params, ...req }: Record<string, unknown>) => ({
        ...req,
        ...(typeof req.url === 'string' ? { url: redactUrl(req.url) } : {}),
        ...('query' in req ? { query: redactQueryObject(req.query) } : {}),
      }),
      // Response headers are the same security headers on every line; the status is what matters.
      res: (res: { statusCode?: number }) => ({ statusCode: res.statusCode }),
    },
    autoLogging: { ignore: (req) => QUIET_PATHS.includes((req.url ?? '').split('?')[0]) },
    customLogLevel: (_req, res, error) => {
      if (error || res.statusCode >= 500) return 'error';
      if (res.statusCode >= 400) return 'warn';
      return 'info';
    },
  };
}
