/**
 * OpenTelemetry's own diagnostics (`diag`: an exporter's port already taken, an OTLP export answered
 * 401 or 404, a dropped span) written into the service log as JSON lines like every other, with
 * `context: "OpenTelemetry"`. Without this the SDK registers no logger unless OTEL_LOG_LEVEL is set,
 * and such failures leave no trace at all.
 */
import { diag, DiagLogger, DiagLogLevel } from '@opentelemetry/api';
import { setGlobalErrorHandler } from '@opentelemetry/core';
import { DestinationStream, Logger, pino, stdTimeFunctions } from 'pino';

export const DIAG_CONTEXT = 'OpenTelemetry';
const MAX_DETAIL = 300;

/** A pino logger with the service's line format (see pinoHttpOptions), for code that runs before Nest. */
export function serviceLogger(level: string, destination?: DestinationStream): Logger {
  const options = { level, timestamp: stdTimeFunctions.isoTime, formatters: { level: (label: string) => ({ level: label }) } };
  return (destination ? pino(options, destination) : pino(options)).child({ context: DIAG_CONTEXT });
}

/** One readable line for whatever diag was given: strings as they are, errors as `Name: message (HTTP code): body`. */
export function describeDiagArgs(args: unknown[]): string {
  return args.map(describe).filter(Boolean).join(' ');
}

function describe(value: unknown): string {
  if (typeof value === 'string') return value;
  if (value instanceof Error) {
    const { code, data } = value as Error & { code?: unknown; data?: unknown };
    const status = typeof code === 'number' ? ` (HTTP ${code})` : typeof code === 'string' ? ` (${code})` : '';
    const body = typeof data === 'string' && data.trim() !== '' ? `: ${data.trim().slice(0, MAX_DETAIL)}` : '';
    return `${value.name}: ${value.message}${status}${body}`;
  }
  if (value === undefined || value === null) return '';
  try {
    return JSON.stringify(value).slice(0, MAX_DETAIL);
  } catch {
    return String(value);
  }
}

/** Maps diag's five levels onto pino's (verbose → trace). */
export function diagToPino(logger: Logger): DiagLogger {
  return {
    error: (message, ...args) => logger.error(describeDiagArgs([message, ...args])),
    warn: (message, ...args) => logger.warn(describeDiagArgs([message, ...args])),
    info: (message, ...args) => logger.info(describeDiagArgs([message, ...args])),
    debug: (message, ...args) => logger.debug(describeDiagArgs([message, ...args])),
    verbose: (message, ...args) => logger.trace(describeDiagArgs([message, ...args])),
  };
}

/**
 * Registers `logger` as OpenTelemetry's diag logger at `level`, replacing any other quietly, and
 * routes the SDK's global error handler (failed exports, failed collections) through it as one
 * compact line instead of the default JSON dump of the error with its stack.
 */
export function routeDiagnostics(logger: Logger, level: DiagLogLevel): void {
  diag.setLogger(diagToPino(logger), { logLevel: level, suppressOverrideMessage: true });
  setGlobalErrorHandler((error) => diag.error(describeDiagArgs([error])));
}
