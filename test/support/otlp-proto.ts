/**
 * Decodes OTLP/HTTP protobuf bodies (`application/x-protobuf`) for the test receiver, with
 * protobufjs and a schema of just the messages and fields the tests read. Field numbers and types
 * are those of opentelemetry-proto v1 (common, resource, trace, metrics and the collector's
 * Export*ServiceRequest); protobuf skips every field a schema does not name, so the subset decodes
 * real exports exactly. The result has the shape of OTLP/JSON (camelCase names, ids as hex,
 * 64-bit integers as strings), so one code path reads both encodings.
 */
import { Root, Type } from 'protobufjs';

const keyValues = { rule: 'repeated', type: 'KeyValue' } as const;

const SCHEMA = {
  nested: {
    otlp: {
      nested: {
        AnyValue: {
          oneofs: { value: { oneof: ['stringValue', 'boolValue', 'intValue', 'doubleValue', 'arrayValue', 'kvlistValue', 'bytesValue'] } },
          fields: {
            stringValue: { type: 'string', id: 1 },
            boolValue: { type: 'bool', id: 2 },
            intValue: { type: 'int64', id: 3 },
            doubleValue: { type: 'double', id: 4 },
            arrayValue: { type: 'ArrayValue', id: 5 },
            kvlistValue: { type: 'KeyValueList', id: 6 },
            bytesValue: { type: 'bytes', id: 7 },
          },
        },
        ArrayValue: { fields: { values: { rule: 'repeated', type: 'AnyValue', id: 1 } } },
        KeyValueList: { fields: { values: { ...keyValues, id: 1 } } },
        KeyValue: { fields: { key: { type: 'string', id: 1 }, value: { type: 'AnyValue', id: 2 } } },
        InstrumentationScope: { fields: { name: { type: 'string', id: 1 }, version: { type: 'string', id: 2 } } },
        Resource: { fields: { attributes: { ...keyValues, id: 1 } } },

        ExportTraceServiceRequest: { fields: { resourceSpans: { rule: 'repeated', type: 'ResourceSpans', id: 1 } } },
        ResourceSpans: { fields: { resource: { type: 'Resource', id: 1 }, scopeSpans: { rule: 'repeated', type: 'ScopeSpans', id: 2 } } },
        ScopeSpans: { fields: { scope: { type: 'InstrumentationScope', id: 1 }, spans: { rule: 'repeated', type: 'Span', id: 2 } } },
        Span: {
          fields: {
            traceId: { type: 'bytes', id: 1 },
            spanId: { type: 'bytes', id: 2 },
            parentSpanId: { type: 'bytes', id: 4 },
            name: { type: 'string', id: 5 },
            kind: { type: 'int32', id: 6 },
            startTimeUnixNano: { type: 'fixed64', id: 7 },
            endTimeUnixNano: { type: 'fixed64', id: 8 },
            attributes: { ...keyValues, id: 9 },
            status: { type: 'Status', id: 15 },
          },
        },
        Status: { fields: { message: { type: 'string', id: 2 }, code: { type: 'int32', id: 3 } } },

        ExportMetricsServiceRequest: { fields: { resourceMetrics: { rule: 'repeated', type: 'ResourceMetrics', id: 1 } } },
        ResourceMetrics: { fields: { resource: { type: 'Resource', id: 1 }, scopeMetrics: { rule: 'repeated', type: 'ScopeMetrics', id: 2 } } },
        ScopeMetrics: { fields: { scope: { type: 'InstrumentationScope', id: 1 }, metrics: { rule: 'repeated', type: 'Metric', id: 2 } } },
        Metric: {
          oneofs: { data: { oneof: ['gauge', 'sum', 'histogram', 'exponentialHistogram', 'summary'] } },
          fields: {
            name: { type: 'string', id: 1 },
            unit: { type: 'string', id: 3 },
            gauge: { type: 'NumberPoints', id: 5 },
            sum: { type: 'NumberPoints', id: 7 },
            histogram: { type: 'HistogramPoints', id: 9 },
            exponentialHistogram: { type: 'ExponentialHistogramPoints', id: 10 },
            summary: { type: 'SummaryPoints', id: 11 },
          },
        },
        // Gauge and Sum share their first field (data_points = 1, NumberDataPoint).
        NumberPoints: { fields: { dataPoints: { rule: 'repeated', type: 'NumberDataPoint', id: 1 } } },
        NumberDataPoint: {
          fields: { attributes: { ...keyValues, id: 7 }, asDouble: { type: 'double', id: 4 }, asInt: { type: 'sfixed64', id: 6 } },
        },
        HistogramPoints: { fields: { dataPoints: { rule: 'repeated', type: 'HistogramDataPoint', id: 1 } } },
        HistogramDataPoint: {
          fields: { attributes: { ...keyValues, id: 9 }, count: { type: 'fixed64', id: 4 }, sum: { type: 'double', id: 5 } },
        },
        ExponentialHistogramPoints: { fields: { dataPoints: { rule: 'repeated', type: 'ExponentialHistogramDataPoint', id: 1 } } },
        ExponentialHistogramDataPoint: {
          fields: { attributes: { ...keyValues, id: 1 }, count: { type: 'fixed64', id: 4 }, sum: { type: 'double', id: 5 } },
        },
        SummaryPoints: { fields: { dataPoints: { rule: 'repeated', type: 'SummaryDataPoint', id: 1 } } },
        SummaryDataPoint: { fields: { attributes: { ...keyValues, id: 7 }, count: { type: 'fixed64', id: 4 }, sum: { type: 'double', id: 5 } } },
      },
    },
  },
};

const root = Root.fromJSON(SCHEMA);
const TRACES: Type = root.lookupType('otlp.ExportTraceServiceRequest');
const METRICS: Type = root.lookupType('otlp.ExportMetricsServiceRequest');

/** Ids (bytes) as lowercase hex, as OTLP/JSON writes them. */
function hexIds(value: unknown): unknown {
  if (Buffer.isBuffer(value) || value instanceof Uint8Array) return Buffer.from(value).toString('hex');
  if (Array.isArray(value)) return value.map(hexIds);
  if (value && typeof value === 'object') return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, hexIds(v)]));
  return value;
}

function decode(type: Type, body: Buffer): unknown {
  return hexIds(type.toObject(type.decode(body), { longs: String, enums: Number, defaults: false }));
}

export function decodeTraces(body: Buffer): unknown {
  return decode(TRACES, body);
}

export function decodeMetrics(body: Buffer): unknown {
  return decode(METRICS, body);
}
