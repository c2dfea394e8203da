import { trace, TraceFlags } from '@opentelemetry/api';

export interface TraceFields {
  trace_id?: string;
  span_id?: string;
  trace_flags?: string;
}

/**
 * The ids of the span active where a log line is written, under the names of the OpenTelemetry
 * log data model (`trace_id`, `span_id`, `trace_flags`), which Grafana/Loki derived fields and
 * Tempo's "logs for this span" look for. Empty when there is no valid span: telemetry off, code
 * outside any request or job, and, without an OTLP endpoint, a request's own lines (no server
 * span is made then: there would be no trace to link to). pino-http's `req.id` still ties a
 * request's lines together.
 */
export function traceFields(): TraceFields {
  const ctx = trace.getActiveSpan()?.spanContext();
  if (!ctx || !trace.isSpanContextValid(ctx)) return {};
  return {
    trace_id: ctx.traceId,
    span_id: ctx.spanId,
    trace_flags: (ctx.traceFlags & TraceFlags.SAMPLED) === TraceFlags.SAMPLED ? '01' : '00',
  };
}
