import 'reflect-metadata';
import { Transform, Type } from 'class-transformer';
import { IsBoolean, IsIn, IsInt, IsOptional, IsString, IsUrl, Max, Min, MinLength } from 'class-validator';

const toBool = ({ value }: { value: unknown }) => {
  if (typeof value !== 'string') return value;
  const v = value.trim().toLowerCase();
  if (['true', '1', 'yes', 'on'].includes(v)) return true;
  if (['false', '0', 'no', 'off', ''].includes(v)) return false;
  return value; // left as a string: @IsBoolean reports it
};
const toList = ({ value }: { value: unknown }) =>
  typeof value === 'string'
    ? value
        .split(',')
        .map((s) => s.trim())
        .filter(Boolean)
    : value;
const emptyToUndefined = ({ value }: { value: unknown }) =>
  typeof value === 'string' && value.trim() === '' ? undefined : value;

const URL_OPTS = { require_tld: false, require_protocol: true, protocols: ['http', 'https'] };

/**
 * Every environment variable the service reads, with its default and its rule.
 * Validated once at start by `loadConfig()`; nothing else reads `process.env`.
 */
export class EnvDto {
  @Type(() => Number) @IsInt() @Min(0) @Max(65535)
  PORT = 3000;

  @IsString() @MinLength(1)
  DATA_DIR = './data';

  /**
   * How long a database statement waits for a lock another process holds (retried without
   * blocking the event loop) before the request fails with 503 DATABASE_BUSY.
   */
  @Type(() => Number) @IsInt() @Min(0) @Max(600_000)
  DATABASE_BUSY_TIMEOUT_MS = 1000;

  @IsOptional() @Transform(emptyToUndefined) @IsString() @MinLength(1)
  GEMINI_API_KEY?: string;

  @IsOptional() @Transform(emptyToUndefined) @IsUrl(URL_OPTS)
  GEMINI_BASE_URL?: string;

  @IsString() @MinLength(1)
  GEMINI_MODEL = 'gemini-2.5-flash-image';

  @Type(() => Number) @IsInt() @Min(100) @Max(600_000)
  GEMINI_TIMEOUT_MS = 120_000;

  /** Deadline for all attempts of one Gemini call together (timeouts + backoff). */
  @IsOptional() @Type(() => Number) @IsInt() @Min(100) @Max(3_600_000)
  GEMINI_JOB_DEADLINE_MS?: number;

  @Type(() => Number) @IsInt() @Min(1) @Max(10_000)
  GEMINI_MAX_CONCURRENCY = 4;

  @Type(() => Number) @IsInt() @Min(0) @Max(10)
  GEMINI_MAX_RETRIES = 1;

  @Type(() => Number) @IsInt() @Min(0) @Max(1_000_000)
  PIPELINE_MAX_QUEUE = 100;

  /** How long SIGTERM waits for running generations before marking them INTERRUPTED. */
  @Type(() => Number) @IsInt() @Min(0) @Max(600_000)
  SHUTDOWN_DRAIN_MS = 25_000;

  @IsOptional() @Transform(emptyToUndefined) @IsString() @MinLength(3)
  S3_BUCKET?: string;

  @IsOptional() @Transform(emptyToUndefined) @IsUrl(URL_OPTS)
  S3_ENDPOINT?: string;

  @IsOptional() @Transform(emptyToUndefined) @IsString()
  S3_REGION?: string;

  @Transform(toBool) @IsBoolean()
  S3_FORCE_PATH_STYLE = false;

  /** Image route answers 302 to a presigned URL (S3 only) instead of streaming the bytes. */
  @Transform(toBool) @IsBoolean()
  S3_PRESIGN = false;

  @IsOptional() @Type(() => Number) @IsInt() @Min(1) @Max(256)
  PALETTE_WORKERS?: number;

  @Type(() => Number) @IsInt() @Min(1) @Max(100_000)
  PALETTE_MAX_QUEUE = 256;

  /**
   * `pool` (default): palette work in worker threads. `inline`: the same task on the main thread, only
   * so the load test can show what that costs the event loop (the replaced system's mistake).
   */
  @IsIn(['pool', 'inline'])
  PALETTE_MODE: 'pool' | 'inline' = 'pool';

  @Type(() => Number) @IsInt() @Min(0) @Max(65535)
  METRICS_PORT = 9464;

  @Transform(toBool) @IsBoolean()
  OTEL_SDK_DISABLED = false;

  @IsString() @MinLength(1)
  OTEL_SERVICE_NAME = 'hybrid-image-search';

  @IsOptional() @Transform(emptyToUndefined) @IsUrl(URL_OPTS)
  OTEL_EXPORTER_OTLP_ENDPOINT?: string;

  @IsIn(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'])
  LOG_LEVEL = 'info';

  /** Comma-separated API keys; set → every /api route needs `x-api-key` or `Authorization: Bearer`. */
  @Transform(toList) @IsString({ each: true })
  API_KEYS: string[] = [];

  /** Requests per minute per API key (or per client address without keys); 0 = unlimited. */
  @Type(() => Number) @IsInt() @Min(0) @Max(1_000_000)
  RATE_LIMIT_PER_MINUTE = 0;

  /** Comma-separated allowed origins, `*` for any; empty = CORS off. */
  @Transform(toList) @IsString({ each: true })
  CORS_ORIGINS: string[] = [];
}
