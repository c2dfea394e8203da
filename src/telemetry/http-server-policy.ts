/**
 * Which incoming requests are measured, and by what. Kept free of SDK and Nest imports:
 * `startTelemetry()` reads it before the app (and with it `http`) may load.
 */
import type { AppConfig } from '../config/app-config';

/** Probes and scrapes: a span or a duration sample per kubelet probe or Prometheus scrape is noise, not signal. */
const UNTRACED_PATHS = ['/health/live', '/health/ready', '/metrics', '/favicon.ico'];
/**
 * Without GEMINI_API_KEY the Gemini emulator runs inside this process on its own port; its
 * `generateContent` requests are not API traffic and must not count in http.server.request.duration.
 */
const EMULATOR_PATH = /^\/v1(beta)?\/models\//;

/** Incoming requests that get neither a span nor an http.server.request.duration sample. */
export function isUntracedRequest(url: string | undefined): boolean {
  const path = (url ?? '').split('?')[0];
  return UNTRACED_PATHS.includes(path) || EMULATOR_PATH.test(path);
}

/**
 * Who records `http.server.request.duration`:
 * - `instrumentation`: spans are exported (OTLP trace export is on), so `@opentelemetry/instrumentation-http`
 *   instruments incoming requests for their server spans, and its histogram is used;
 * - `middleware`: nothing receives spans, so the instrumentation does not see incoming requests
 *   (0.14–0.18 ms of CPU per request, more than half what a cheap route itself costs) and
 *   `httpServerDurationMiddleware` records the same histogram for a few µs;
 * - `none`: telemetry is off.
 */
export type HttpServerDurationSource = 'instrumentation' | 'middleware' | 'none';

export function httpServerDurationSource(config: Pick<AppConfig, 'telemetry'>): HttpServerDurationSource {
  if (config.telemetry.disabled) return 'none';
  return config.telemetry.traces.otlp === null ? 'middleware' : 'instrumentation';
}
