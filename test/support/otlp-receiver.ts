import { createServer, IncomingMessage, Server } from 'node:http';
import { AddressInfo } from 'node:net';

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

export interface OtlpReceiver {
  /** Base URL to put into OTEL_EXPORTER_OTLP_ENDPOINT. */
  readonly endpoint: string;
  spans(): ReceivedSpan[];
  /** Every metric export received, flattened (the same metric appears once per export). */
  metrics(): ReceivedMetric[];
  metricNames(): Set<string>;
  /** Requests per path, e.g. `/v1/traces`. */
  requests(): Record<string, number>;
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

async function readBody(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
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
 * A minimal OTLP/HTTP receiver on 127.0.0.1 for tests: accepts JSON-encoded (`application/json`)
 * exports on /v1/traces, /v1/metrics and /v1/logs, answers 200 with an empty partial-success
 * body, and keeps what it got. Protobuf bodies get 415, so a wrong exporter shows up as a
 * failure rather than as silently missing data.
 */
export async function startOtlpReceiver(): Promise<OtlpReceiver> {
  const spans: ReceivedSpan[] = [];
  const metrics: ReceivedMetric[] = [];
  const requests: Record<string, number> = {};

  const server: Server = createServer((req, res) => {
    void (async () => {
      const path = (req.url ?? '').split('?')[0];
      requests[path] = (requests[path] ?? 0) + 1;
      const body = await readBody(req);
      if (req.method !== 'POST' || !['/v1/traces', '/v1/metrics', '/v1/logs'].includes(path)) {
        res.writeHead(404).end();
        return;
      }
      if (!(req.headers['content-type'] ?? '').startsWith('application/json')) {
        res.writeHead(415, { 'content-type': 'text/plain' }).end('this test receiver accepts OTLP/JSON only');
        return;
      }
      const payload = JSON.parse(body) as ExportTraceRequest & ExportMetricsRequest;
      if (path === '/v1/traces') {
        for (const rs of payload.resourceSpans ?? []) {
          const resource = toAttributes(rs.resource?.attributes);
          for (const ss of rs.scopeSpans ?? []) {
            for (const s of ss.spans ?? []) {
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
      } else if (path === '/v1/metrics') {
        for (const rm of payload.resourceMetrics ?? []) {
          const resource = toAttributes(rm.resource?.attributes);
          for (const sm of rm.scopeMetrics ?? []) {
            for (const m of sm.metrics ?? []) {
              const type = (['histogram', 'sum', 'gauge', 'exponentialHistogram', 'summary'] as const).find((t) => m[t]);
              if (!type) continue;
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
      }
      res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
    })().catch((error: unknown) => {
      res.writeHead(400, { 'content-type': 'text/plain' }).end(String(error));
    });
  });
  await new Promise<void>((done) => server.listen(0, '127.0.0.1', done));
  const { port } = server.address() as AddressInfo;

  return {
    endpoint: `http://127.0.0.1:${port}`,
    spans: () => [...spans],
    metrics: () => [...metrics],
    metricNames: () => new Set(metrics.map((m) => m.name)),
    requests: () => ({ ...requests }),
    waitFor: async (predicate, timeoutMs, describe) => {
      const deadline = Date.now() + timeoutMs;
      while (!predicate()) {
        if (Date.now() > deadline) throw new Error(`OTLP receiver: condition not met within ${timeoutMs} ms: ${describe()}`);
        await new Promise((r) => setTimeout(r, 100));
      }
    },
    close: () => new Promise<void>((done) => server.close(() => done())),
  };
}
