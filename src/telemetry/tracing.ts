import { Attributes, Span, SpanKind, SpanStatusCode, trace } from '@opentelemetry/api';
import { INSTRUMENTATION_SCOPE } from './app-metrics';

/**
 * Looked up per call (cheap: the provider caches tracers) rather than once at module load, so a
 * provider registered later — a test installing an in-memory exporter — is always the one used.
 */
export const getTracer = () => trace.getTracer(INSTRUMENTATION_SCOPE);

/**
 * Runs `fn` inside an active span named `name`; records an exception and ERROR status when it
 * throws, and always ends the span. Child spans started inside `fn` link to it.
 */
export function withSpan<T>(
  name: string,
  attributes: Attributes,
  fn: (span: Span) => Promise<T>,
  kind: SpanKind = SpanKind.INTERNAL,
): Promise<T> {
  return getTracer().startActiveSpan(name, { attributes, kind }, async (span) => {
    try {
      return await fn(span);
    } catch (error) {
      span.recordException(error as Error);
      span.setStatus({ code: SpanStatusCode.ERROR, message: (error as Error)?.message });
      const code = (error as { code?: unknown })?.code;
      if (typeof code === 'string') span.setAttribute('error.type', code);
      throw error;
    } finally {
      span.end();
    }
  });
}
