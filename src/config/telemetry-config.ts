/**
 * The OpenTelemetry variables, read as the SDK environment specification says
 * (https://opentelemetry.io/docs/specs/otel/configuration/sdk-environment-variables/): an empty value
 * is unset; enum values are case-insensitive; a value the service does not support is logged as a
 * warning and ignored (never a refusal to start); only `true` (any case) is true.
 *
 * Where the service departs from the SDK defaults, on purpose:
 * - with neither `OTEL_TRACES_EXPORTER` nor an OTLP endpoint for traces, nothing is exported (the
 *   SDK default would be OTLP to http://localhost:4318); the same for metrics, whose default is the
 *   Prometheus endpoint on METRICS_HOST:METRICS_PORT (the SDK's `prometheus` exporter, configured by
 *   the service's variables instead of OTEL_EXPORTER_PROMETHEUS_HOST/PORT);
 * - `grpc` is not supported: the exporters are OTLP/HTTP (`http/protobuf`, the default, and `http/json`).
 *
 * The variables the SDK reads itself (OTEL_BSP_*, OTEL_EXPORTER_OTLP_*_HEADERS/_TIMEOUT, the endpoints'
 * URLs, OTEL_TRACES_SAMPLER*, OTEL_RESOURCE_ATTRIBUTES' other attributes, OTEL_METRIC_EXPORT_*) are
 * not repeated here.
 */
import { DiagLogLevel } from '@opentelemetry/api';

export type OtlpProtocol = 'http/protobuf' | 'http/json';

export const DEFAULT_SERVICE_NAME = 'hybrid-image-search';

/** The raw variables (validated as strings or URLs by EnvDto). */
export interface TelemetryEnv {
  OTEL_SDK_DISABLED?: string;
  OTEL_SERVICE_NAME?: string;
  OTEL_RESOURCE_ATTRIBUTES?: string;
  OTEL_LOG_LEVEL?: string;
  OTEL_TRACES_EXPORTER?: string;
  OTEL_METRICS_EXPORTER?: string;
  OTEL_EXPORTER_OTLP_ENDPOINT?: string;
  OTEL_EXPORTER_OTLP_TRACES_ENDPOINT?: string;
  OTEL_EXPORTER_OTLP_METRICS_ENDPOINT?: string;
  OTEL_EXPORTER_OTLP_PROTOCOL?: string;
  OTEL_EXPORTER_OTLP_TRACES_PROTOCOL?: string;
  OTEL_EXPORTER_OTLP_METRICS_PROTOCOL?: string;
  METRICS_PORT: number;
}

export interface TelemetryConfig {
  /** `OTEL_SDK_DISABLED=true`: no SDK at all. */
  readonly disabled: boolean;
  /** `OTEL_SERVICE_NAME`, else `service.name` of `OTEL_RESOURCE_ATTRIBUTES`, else `hybrid-image-search`. */
  readonly serviceName: string;
  /** OTLP trace export and its encoding; null: no span is exported (nor recorded: they still get ids). */
  readonly traces: { readonly otlp: OtlpProtocol | null };
  /** Where metrics go: the Prometheus endpoint (METRICS_HOST:METRICS_PORT), OTLP (with its encoding), both, or neither. */
  readonly metrics: { readonly prometheus: boolean; readonly otlp: OtlpProtocol | null };
  /** OTEL_LOG_LEVEL (default WARN): what the SDK's own diagnostics write into the service log. */
  readonly diagLogLevel: DiagLogLevel;
  /** Values the specification says to ignore, each with what was done instead: logged at start. */
  readonly warnings: readonly string[];
}

const PROTOCOLS: readonly OtlpProtocol[] = ['http/protobuf', 'http/json'];
const DIAG_LEVELS: Record<string, DiagLogLevel> = {
  none: DiagLogLevel.NONE,
  error: DiagLogLevel.ERROR,
  warn: DiagLogLevel.WARN,
  info: DiagLogLevel.INFO,
  debug: DiagLogLevel.DEBUG,
  verbose: DiagLogLevel.VERBOSE,
  all: DiagLogLevel.ALL,
};

const blank = (value: string | undefined): value is undefined => value === undefined || value.trim() === '';

export function telemetryConfig(env: TelemetryEnv): TelemetryConfig {
  const warnings: string[] = [];
  const disabled = specBoolean('OTEL_SDK_DISABLED', env.OTEL_SDK_DISABLED, warnings);

  const traceExporters = exporterList('OTEL_TRACES_EXPORTER', env.OTEL_TRACES_EXPORTER, ['otlp'], warnings);
  const metricExporters = exporterList('OTEL_METRICS_EXPORTER', env.OTEL_METRICS_EXPORTER, ['otlp', 'prometheus'], warnings);
  const baseEndpoint = !blank(env.OTEL_EXPORTER_OTLP_ENDPOINT);
  const protocol = otlpProtocol('OTEL_EXPORTER_OTLP_PROTOCOL', env.OTEL_EXPORTER_OTLP_PROTOCOL, warnings);
  const tracesProtocol = otlpProtocol('OTEL_EXPORTER_OTLP_TRACES_PROTOCOL', env.OTEL_EXPORTER_OTLP_TRACES_PROTOCOL, warnings) ?? protocol;
  const metricsProtocol = otlpProtocol('OTEL_EXPORTER_OTLP_METRICS_PROTOCOL', env.OTEL_EXPORTER_OTLP_METRICS_PROTOCOL, warnings) ?? protocol;

  // Unset exporter lists: OTLP where an endpoint was given for that signal; Prometheus for metrics.
  const tracesOtlp = traceExporters ? traceExporters.includes('otlp') : baseEndpoint || !blank(env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT);
  const metricsOtlp = metricExporters ? metricExporters.includes('otlp') : baseEndpoint || !blank(env.OTEL_EXPORTER_OTLP_METRICS_ENDPOINT);
  const prometheusWanted = metricExporters ? metricExporters.includes('prometheus') : true;
  if (metricExporters?.includes('prometheus') && env.METRICS_PORT === 0) {
    warnings.push('OTEL_METRICS_EXPORTER lists prometheus but METRICS_PORT=0: no metrics endpoint is served');
  }

  return {
    disabled,
    serviceName: serviceName(env, warnings),
    traces: { otlp: tracesOtlp ? (tracesProtocol ?? 'http/protobuf') : null },
    metrics: { prometheus: prometheusWanted && env.METRICS_PORT > 0, otlp: metricsOtlp ? (metricsProtocol ?? 'http/protobuf') : null },
    diagLogLevel: diagLogLevel(env.OTEL_LOG_LEVEL, warnings),
    warnings,
  };
}

/** Only `true` (any case) is true; anything but `false`/empty is false with a warning. */
function specBoolean(name: string, value: string | undefined, warnings: string[]): boolean {
  if (blank(value)) return false;
  const v = value.trim().toLowerCase();
  if (v === 'true') return true;
  if (v !== 'false') warnings.push(`${name}=${JSON.stringify(value)} is neither true nor false: treated as false`);
  return false;
}

/**
 * A comma-separated exporter list: undefined when unset (or when every value was ignored), `[]` for
 * `none` (which wins over anything listed with it).
 */
function exporterList(name: string, value: string | undefined, supported: string[], warnings: string[]): string[] | undefined {
  if (blank(value)) return undefined;
  const names = [...new Set(value.split(',').map((s) => s.trim().toLowerCase()).filter(Boolean))];
  if (names.includes('none')) {
    if (names.length > 1) warnings.push(`${name}=${JSON.stringify(value)}: none turns the others off`);
    return [];
  }
  const known = names.filter((n) => supported.includes(n));
  for (const n of names.filter((n) => !supported.includes(n))) {
    warnings.push(`${name}: ${JSON.stringify(n)} is not supported (supported: ${[...supported, 'none'].join(', ')}); ignored`);
  }
  return known.length > 0 ? known : undefined;
}

function otlpProtocol(name: string, value: string | undefined, warnings: string[]): OtlpProtocol | undefined {
  if (blank(value)) return undefined;
  const v = value.trim().toLowerCase();
  if ((PROTOCOLS as string[]).includes(v)) return v as OtlpProtocol;
  warnings.push(`${name}: ${JSON.stringify(value)} is not supported (supported: ${PROTOCOLS.join(', ')}); ignored`);
  return undefined;
}

function diagLogLevel(value: string | undefined, warnings: string[]): DiagLogLevel {
  if (blank(value)) return DiagLogLevel.WARN;
  const level = DIAG_LEVELS[value.trim().toLowerCase()];
  if (level !== undefined) return level;
  warnings.push(`OTEL_LOG_LEVEL: ${JSON.stringify(value)} is not a level (${Object.keys(DIAG_LEVELS).join(', ')}); using warn`);
  return DiagLogLevel.WARN;
}

/** OTEL_SERVICE_NAME wins over `service.name` in OTEL_RESOURCE_ATTRIBUTES, which wins over the default. */
function serviceName(env: TelemetryEnv, warnings: string[]): string {
  if (!blank(env.OTEL_SERVICE_NAME)) return env.OTEL_SERVICE_NAME.trim();
  if (blank(env.OTEL_RESOURCE_ATTRIBUTES)) return DEFAULT_SERVICE_NAME;
  try {
    return parseResourceAttributes(env.OTEL_RESOURCE_ATTRIBUTES)['service.name'] || DEFAULT_SERVICE_NAME;
  } catch (error) {
    warnings.push(`OTEL_RESOURCE_ATTRIBUTES discarded: ${(error as Error).message}`);
    return DEFAULT_SERVICE_NAME;
  }
}

/**
 * `key=value,…` with percent-encoded keys and values, parsed as the SDK's resource detector does:
 * any malformed entry discards the whole variable (it throws).
 */
export function parseResourceAttributes(raw: string): Record<string, string> {
  const attributes: Record<string, string> = {};
  for (const entry of raw.split(',').filter((e) => e.trim() !== '')) {
    const pair = entry.split('=');
    if (pair.length !== 2 || pair[0].trim() === '') throw new Error(`"${entry}" is not key=value (escape ',' and '=' as %2C and %3D)`);
    try {
      attributes[decodeURIComponent(pair[0].trim())] = decodeURIComponent(pair[1].trim());
    } catch {
      throw new Error(`"${entry}" is not valid percent-encoding`);
    }
  }
  return attributes;
}
