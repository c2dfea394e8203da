import { createServer, IncomingMessage, Server } from 'node:http';
import { AddressInfo } from 'node:net';
import { decodeMetrics, decodeTraces } from './otlp-proto';

/** An OTLP attribute value as JSON-encoded OTLP carries it. */
interface AnyValue {
  stringValue?: string;
  boolValue?: boolean;
  intValue?: number | string;
  doubleValue?: number;
  arrayValue?: { values?: AnyValue[] };
}
interface KeyValue {
  key: string;
  value: AnyValue;
}
type Attributes = Record<string, unknown>;

export interface ReceivedSpan {
  traceId: string;
  spanId: string;
  /** Empty for a root span. */
  parentSpanId: string;
  name: string;
  /** OTLP SpanKind: 1 internal, 2 server, 3 client, 4 producer, 5 consumer. */
  kind: number;
  attributes: Attributes;
  status: { code?: number; message?: string };
  scope: string;
  resource: Attributes;
  durationMs: number;
}

export interface ReceivedMetricPoint {
  attributes: Attributes;
  /** Gauge/sum value, or a histogram's count. */
  value: number;
  /** Histograms only. */
  sum?: number;
}

export interface ReceivedMetric {
  name: string;
  unit: string;
  type: 'histogram' | 'sum' | 'gauge' | 'exponentialHistogram' | 'summary';
  scope: string;
  resource: Attributes;
  points: ReceivedMetricPoint[];
}

export type OtlpSignal = 'traces' | 'metrics' | 'logs';
export type OtlpEncoding = 'protobuf' | 'json';

/** One export request, as it arrived. */
export interface ReceivedExport {
  path: string;
  signal: OtlpSignal;
  encoding: OtlpEncoding;
  /** Spans or metrics it carried (0 when it was refused). */
  items: number;
  /** What the receiver answered. */
  status: number;
}

export interface OtlpReceiverOptions {
  /** Status every export is answered with (default 200), e.g. 401 or 404: nothing is kept then. */
  status?: number;
  /** Paths for each signal (default `/v1/traces`, `/v1/metrics`, `/v1/logs`, the base endpoint's). */
  paths?: Partial<Record<OtlpSignal, string>>;
}

export interface OtlpReceiver {
  /** Base URL to put into OTEL_EXPORTER_OTLP_ENDPOINT. */
  readonly endpoint: string;
  /** Full URL of a signal's path: for OTEL_EXPORTER_OTLP_TRACES_ENDPOINT / _METRICS_ENDPOINT. */
  url(signal: OtlpSignal): string;
  spans(): ReceivedSpan[];
  /** Every metric export received, flattened (the same metric appears once per export). */
  metrics(): ReceivedMetric[];
  metricNames(): Set<string>;
  /** Requests per path, e.g. `/v1/traces`. */
  requests(): Record<string, number>;
  /** Every export request of a known signal, oldest first. */
  exports(): ReceivedExport[];
  /** Trace exports are answered only at `release()` from now on (an exporter that waits on its backend). */
  holdTraces(): void;
  release(): void;
  /** Polls until `predicate` holds; rejects with `describe()` after `timeoutMs`. */
  waitFor(predicate: () => boolean, timeoutMs: number, describe: () => string): Promise<void>;
  close(): Promise<void>;
}

function toValue(v: AnyValue | undefined): unknown {
  if (!v) return undefined;
  if (v.stringValue !== undefined) return v.stringValue;
  if (v.boolValue !== undefined) return v.boolValue;
  if (v.intValue !== undefined) return Number(v.intValue);
  if (v.doubleValue !== undefined) return v.doubleValue;
  if (v.arrayValue) return (v.arrayValue.values ?? []).map(toValue);
  return undefined;
}

function toAttributes(list: KeyValue[] | undefined): Attributes {
  return Object.fromEntries((list ?? []).map((kv) => [kv.key, toValue(kv.value)]));
}

async function readBody(req: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

interface ExportTraceRequest {
  resourceSpans?: {
    resource?: { attributes?: KeyValue[] };
    scopeSpans?: {
      scope?: { name?: string };
      spans?: {
        traceId: string;
        spanId: string;
        parentSpanId?: string;
        name: string;
        kind: number;
        attributes?: KeyValue[];
        status?: { code?: number; message?: string };
        startTimeUnixNano: string | number;
        endTimeUnixNano: string | number;
      }[];
    }[];
  }[];
}

interface NumberPoint {
  attributes?: KeyValue[];
  asDouble?: number;
  asInt?: number | string;
  count?: number | string;
  sum?: number;
}
interface ExportMetricsRequest {
  resourceMetrics?: {
    resource?: { attributes?: KeyValue[] };
    scopeMetrics?: {
      scope?: { name?: string };
      metrics?: ({ name: string; unit?: string } & Partial<
        Record<ReceivedMetric['type'], { dataPoints?: NumberPoint[] }>
      >)[];
    }[];
  }[];
}

/**
 * A minimal OTLP/HTTP receiver on 127.0.0.1 for tests: takes exports in either encoding the
 * specification defines for OTLP/HTTP, protobuf (`application/x-protobuf`, decoded with the OTLP
 * schema: see otlp-proto.ts) and JSON (`application/json`), on /v1/traces, /v1/metrics and /v1/logs
 * (or the paths given), answers 200 with an empty partial-success body in the request's encoding
 * (or `options.status`), and keeps what it got. Any other content type gets 415, so an exporter
 * sending something else shows up as a failure rather than as silently missing data.
 */
export async function startOtlpReceiver(options: OtlpReceiverOptions = {}): Promise<OtlpReceiver> {
  const spans: ReceivedSpan[] = [];
  const metrics: ReceivedMetric[] = [];
  const requests: Record<string, number> = {};
  const exports: ReceivedExport[] = [];
  const paths: Record<OtlpSignal, string> = { traces: '/v1/traces', metrics: '/v1/metrics', logs: '/v1/logs', ...options.paths };
  const status = options.status ?? 200;
  let held: Promise<void> | undefined;
  let releaseHeld = () => {};

  const keepTraces = (payload: ExportTraceRequest): number => {
    let count = 0;
    for (const rs of payload.resourceSpans ?? []) {
      const resource = toAttributes(rs.resource?.attributes);
      for (const ss of rs.scopeSpans ?? []) {
        for (const s of ss.spans ?? []) {
          count++;
          spans.push({
            traceId: s.traceId,
            spanId: s.spanId,
            parentSpanId: s.parentSpanId ?? '',
            name: s.name,
            kind: s.kind,
            attributes: toAttributes(s.attributes),
            status: s.status ?? {},
            scope: ss.scope?.name ?? '',
            resource,
            durationMs: (Number(s.endTimeUnixNano) - Number(s.startTimeUnixNano)) / 1e6,
          });
        }
      }
    }
    return count;
  };
  const keepMetrics = (payload: ExportMetricsRequest): number => {
    let count = 0;
    for (const rm of payload.resourceMetrics ?? []) {
      const resource = toAttributes(rm.resource?.attributes);
      for (const sm of rm.scopeMetrics ?? []) {
        for (const m of sm.metrics ?? []) {
          const type = (['histogram', 'sum', 'gauge', 'exponentialHistogram', 'summary'] as const).find((t) => m[t]);
          if (!type) continue;
          count++;
          metrics.push({
            name: m.name,
            unit: m.unit ?? '',
            type,
            scope: sm.scope?.name ?? '',
            resource,
            points: (m[type]?.dataPoints ?? []).map((p) => ({
              attributes: toAttributes(p.attributes),
              value: Number(p.asDouble ?? p.asInt ?? p.count ?? NaN),
              ...(p.sum !== undefined ? { sum: p.sum } : {}),
            })),
          });
        }
      }
    }
    return count;
  };

  const server: Server = createServer((req, res) => {
    void (async () => {
      const path = (req.url ?? '').split('?')[0];
      requests[path] = (requests[path] ?? 0) + 1;
      const body = await readBody(req);
      const signal = (Object.keys(paths) as OtlpSignal[]).find((k) => paths[k] === path);
      if (req.method !== 'POST' || !signal) {
        res.writeHead(404).end();
        return;
      }
      const contentType = req.headers['content-type'] ?? '';
      const encoding: OtlpEncoding | undefined = contentType.startsWith('application/x-protobuf')
        ? 'protobuf'
        : contentType.startsWith('application/json')
          ? 'json'
          : undefined;
      if (!encoding) {
        res.writeHead(415, { 'content-type': 'text/plain' }).end('this test receiver accepts OTLP/HTTP protobuf or JSON only');
        return;
      }
      if (signal === 'traces' && held) await held;
      let items = 0;
      if (status === 200) {
        if (signal === 'traces') {
          items = keepTraces((encoding === 'json' ? JSON.parse(body.toString('utf8')) : decodeTraces(body)) as ExportTraceRequest);
        } else if (signal === 'metrics') {
          items = keepMetrics((encoding === 'json' ? JSON.parse(body.toString('utf8')) : decodeMetrics(body)) as ExportMetricsRequest);
        }
      }
      exports.push({ path, signal, encoding, items, status });
      if (status !== 200) res.writeHead(status, { 'content-type': 'text/plain' }).end(`test receiver answers ${status}`);
      // An empty Export*ServiceResponse: no bytes in protobuf, `{}` in JSON.
      else if (encoding === 'protobuf') res.writeHead(200, { 'content-type': 'application/x-protobuf' }).end();
      else res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
    })().catch((error: unknown) => {
      res.writeHead(400, { 'content-type': 'text/plain' }).end(String(error));
    });
  });
  await new Promise<void>((done) => server.listen(0, '127.0.0.1', done));
  const { port } = server.address() as AddressInfo;
  const endpoint = `http://127.0.0.1:${port}`;

  return {
    endpoint,
    url: (signal) => `${endpoint}${paths[signal]}`,
    spans: () => [...spans],
    metrics: () => [...metrics],
    metricNames: () => new Set(metrics.map((m) => m.name)),
    requests: () => ({ ...requests }),
    exports: () => [...exports],
    holdTraces: () => {
      held ??= new Promise<void>((done) => (releaseHeld = done));
    },
    release: () => {
      held = undefined;
      releaseHeld();
    },
    waitFor: async (predicate, timeoutMs, describe) => {
      const deadline = Date.now() + timeoutMs;
      while (!predicate()) {
        if (Date.now() > deadline) throw new Error(`OTLP receiver: condition not met within ${timeoutMs} ms: ${describe()}`);
        await new Promise((r) => setTimeout(r, 100));
      }
    },
    close: () => {
      held = undefined;
      releaseHeld();
      const closed = new Promise<void>((done) => server.close(() => done()));
      server.closeIdleConnections();
      return closed;
    },
  };
}
