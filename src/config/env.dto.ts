import 'reflect-metadata';
import { Transform, Type } from 'class-transformer';
import { IsBoolean, IsIn, IsInt, IsOptional, IsString, IsUrl, Matches, Max, Min, MinLength } from 'class-validator';
import { IsPostgresUrl } from './database-url';

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

  /** Interface of the API: `0.0.0.0` all IPv4 interfaces, `::` all (dual stack), `127.0.0.1` this host only. */
  @Matches(/^[A-Za-z0-9.:-]{1,253}$/, { message: 'HOST must be an IP address or a host name' })
  HOST = '0.0.0.0';

  @IsString() @MinLength(1)
  DATA_DIR = './data';

  /**
   * How long a database statement waits for a lock another process holds (retried without
   * blocking the event loop) before the request fails with 503 DATABASE_BUSY.
   */
  @Type(() => Number) @IsInt() @Min(0) @Max(600_000)
  DATABASE_BUSY_TIMEOUT_MS = 1000;

  /** `production` refuses to start without GEMINI_API_KEY or GEMINI_BASE_URL (no emulator images in production). */
  @IsOptional() @IsString()
  NODE_ENV?: string;

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

  /**
   * Added to the nice value of the palette threads (0..19, higher = lower priority; 0 = off), so the
   * event loop gets a core first when both want one: the pool's threads through Piscina's
   * `niceIncrement` (the optional @napi-rs/nice), and with PALETTE_NICE_THREADS=all also libuv's
   * pool and libvips' threads (Linux). Measured in docs/capacity/palette-liveness.md.
   */
  @Type(() => Number) @IsInt() @Min(0) @Max(19)
  PALETTE_WORKER_NICE = 10;

  /**
   * Which threads PALETTE_WORKER_NICE lowers: `all` (the pool's threads, and libuv's pool and
   * libvips' threads, where sharp decodes: most of the CPU; the event loop's own file I/O shares
   * libuv's pool) or `workers` (the pool's threads only: the palette's JavaScript, ≈ 5 % of it).
   */
  @IsIn(['workers', 'all'])
  PALETTE_NICE_THREADS: 'workers' | 'all' = 'all';

  /**
   * libvips threads per image operation in the palette workers (`sharp.concurrency`); 0 = libvips'
   * default (one per core). The pool's workers are the parallelism: more threads only compete.
   */
  @Type(() => Number) @IsInt() @Min(0) @Max(256)
  PALETTE_LIBVIPS_THREADS = 1;

  @Type(() => Number) @IsInt() @Min(1) @Max(100_000)
  PALETTE_MAX_QUEUE = 256;

  /**
   * `pool` (default): palette work in worker threads. `inline`: the same task on the main thread, only
   * so the load test can show what that costs the event loop (the replaced system's mistake).
   */
  @IsIn(['pool', 'inline'])
  PALETTE_MODE: 'pool' | 'inline' = 'pool';

  /**
   * Longest a palette task may take from entering the pool (queue wait included) to its answer; then
   * it is aborted (its worker thread replaced) and answers PALETTE_TIMEOUT.
   */
  @Type(() => Number) @IsInt() @Min(10) @Max(600_000)
  PALETTE_TASK_TIMEOUT_MS = 30_000;

  /**
   * Largest image a palette task decodes, as width × height × channels × bytes per sample (MB =
   * 2^20 bytes), checked from the header before any pixel is decoded: larger → IMAGE_TOO_LARGE.
   */
  @Type(() => Number) @IsInt() @Min(1) @Max(65_536)
  PALETTE_MAX_DECODED_MB = 320;

  /** Where multipart uploads are streamed while their request runs (a directory of their own). */
  @IsOptional() @Transform(emptyToUndefined) @IsString() @MinLength(1)
  UPLOAD_TMP_DIR?: string;

  /**
   * Bytes (MB = 2^20) of uploads in flight at once, counted by their declared Content-Length (the
   * maximum when it is absent) from admission until their response is sent; past it → 503 UPLOADS_BUSY.
   */
  @Type(() => Number) @IsInt() @Min(1) @Max(1_048_576)
  UPLOAD_MAX_INFLIGHT_MB = 1024;

  @Type(() => Number) @IsInt() @Min(0) @Max(65535)
  METRICS_PORT = 9464;

  /** Interface of the metrics endpoint: `0.0.0.0` all IPv4 interfaces (a Prometheus elsewhere must reach it), `::` all, `127.0.0.1` this host only. */
  @Matches(/^[A-Za-z0-9.:-]{1,253}$/, { message: 'METRICS_HOST must be an IP address or a host name' })
  METRICS_HOST = '0.0.0.0';

  /*
   * OpenTelemetry: read with the SDK specification's rules by telemetryConfig() (telemetry-config.ts),
   * where an unsupported value is logged and ignored, as the specification says, rather than refused.
   * Endpoints are URLs and are refused when they are not.
   */
  @IsOptional() @IsString()
  OTEL_SDK_DISABLED?: string;

  @IsOptional() @IsString()
  OTEL_SERVICE_NAME?: string;

  @IsOptional() @IsString()
  OTEL_RESOURCE_ATTRIBUTES?: string;

  @IsOptional() @IsString()
  OTEL_LOG_LEVEL?: string;

  @IsOptional() @IsString()
  OTEL_TRACES_EXPORTER?: string;

  @IsOptional() @IsString()
  OTEL_METRICS_EXPORTER?: string;

  @IsOptional() @Transform(emptyToUndefined) @IsUrl(URL_OPTS)
  OTEL_EXPORTER_OTLP_ENDPOINT?: string;

  @IsOptional() @Transform(emptyToUndefined) @IsUrl(URL_OPTS)
  OTEL_EXPORTER_OTLP_TRACES_ENDPOINT?: string;

  @IsOptional() @Transform(emptyToUndefined) @IsUrl(URL_OPTS)
  OTEL_EXPORTER_OTLP_METRICS_ENDPOINT?: string;

  @IsOptional() @IsString()
  OTEL_EXPORTER_OTLP_PROTOCOL?: string;

  @IsOptional() @IsString()
  OTEL_EXPORTER_OTLP_TRACES_PROTOCOL?: string;

  @IsOptional() @IsString()
  OTEL_EXPORTER_OTLP_METRICS_PROTOCOL?: string;

  @IsIn(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'])
  LOG_LEVEL = 'info';

  /**
   * Comma-separated `name:key` entries (a bare `key` is named by a short hash of itself); set → every
   * /api route needs `x-api-key` or `Authorization: Bearer`, and each key sees only its own data.
   */
  @Transform(toList) @IsString({ each: true })
  API_KEYS: string[] = [];

  /** Requests per minute per API key (or per client address without keys); 0 = unlimited. */
  @Type(() => Number) @IsInt() @Min(0) @Max(1_000_000)
  RATE_LIMIT_PER_MINUTE = 0;

  /** Generations one client (API key, or address without keys) may have queued or running at once. */
  @Type(() => Number) @IsInt() @Min(1) @Max(100_000)
  MAX_ACTIVE_GENERATIONS_PER_CLIENT = 20;

  /** Gemini calls one client may have in flight; default half of GEMINI_MAX_CONCURRENCY, rounded up. */
  @IsOptional() @Type(() => Number) @IsInt() @Min(1) @Max(10_000)
  GEMINI_MAX_CONCURRENCY_PER_CLIENT?: number;
  /**
   * A request's headers and body must have arrived within this (then `408` and the connection is
   * closed). It covers receiving the request only: responses, SSE streams included, are not cut.
   * 60 s lets a 20 MB upload through at ≥ 2.7 Mbit/s.
   */
  @Type(() => Number) @IsInt() @Min(100) @Max(3_600_000)
  HTTP_REQUEST_TIMEOUT_MS = 60_000;

  /** How long an idle keep-alive connection stays open between requests. */
  @Type(() => Number) @IsInt() @Min(100) @Max(3_600_000)
  HTTP_KEEP_ALIVE_TIMEOUT_MS = 5_000;

  /** Open event streams (`/events`) per API key, or per client address without keys; more → 429. */
  @Type(() => Number) @IsInt() @Min(1) @Max(1_000_000)
  SSE_MAX_STREAMS_PER_CLIENT = 20;

  /** Open event streams in this process, all clients together; more → 429. */
  @Type(() => Number) @IsInt() @Min(1) @Max(1_000_000)
  SSE_MAX_STREAMS = 2_000;

  /** Unset → SQLite in DATA_DIR; `postgres://…` or `postgresql://…` → PostgreSQL. */
  @IsOptional() @Transform(emptyToUndefined) @IsPostgresUrl()
  DATABASE_URL?: string;

  /** PostgreSQL connections per instance. */
  @Type(() => Number) @IsInt() @Min(1) @Max(1000)
  DATABASE_POOL_SIZE = 10;

  /** How long opening a PostgreSQL connection (or waiting for a free one) may take. */
  @Type(() => Number) @IsInt() @Min(100) @Max(600_000)
  DATABASE_CONNECT_TIMEOUT_MS = 5_000;

  /** PostgreSQL cancels any statement of the service that runs longer (migrations excepted); 0 = no limit. */
  @Type(() => Number) @IsInt() @Min(0) @Max(3_600_000)
  DATABASE_STATEMENT_TIMEOUT_MS = 30_000;

  /**
   * Unset → in-process queue and events (one instance). `redis://…` → jobs on a BullMQ queue in Redis,
   * events and cancel across instances, one global Gemini quota. Needs DATABASE_URL.
   */
  @IsOptional() @Transform(emptyToUndefined) @IsUrl({ require_tld: false, require_protocol: true, protocols: ['redis', 'rediss'] })
  REDIS_URL?: string;

  /** Prefix of every Redis key and channel the service uses (several deployments can share a Redis). */
  @Matches(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/)
  REDIS_PREFIX = 'his';

  /** `api` (HTTP only: enqueues, never calls Gemini), `worker` (runs jobs; health and metrics only), `all`. */
  @IsIn(['all', 'api', 'worker'])
  ROLE: 'all' | 'api' | 'worker' = 'all';

  /** Gemini calls started per minute (the key's quota); global with REDIS_URL. 0 = no limit. */
  @Type(() => Number) @IsInt() @Min(0) @Max(1_000_000)
  GEMINI_RATE_LIMIT_PER_MINUTE = 0;

  /** Image jobs one worker process runs at once (with REDIS_URL); default 2 × GEMINI_MAX_CONCURRENCY, at most 64. */
  @IsOptional() @Type(() => Number) @IsInt() @Min(1) @Max(10_000)
  WORKER_CONCURRENCY?: number;

  /** With REDIS_URL: a job whose worker stops renewing its lock this long is taken over by another. */
  @Type(() => Number) @IsInt() @Min(1_000) @Max(600_000)
  QUEUE_LOCK_MS = 30_000;

  /** With REDIS_URL: takeovers after which a job that keeps killing its workers fails INTERRUPTED. */
  @Type(() => Number) @IsInt() @Min(0) @Max(100)
  QUEUE_MAX_TAKEOVERS = 2;

  /**
   * Refuse new generations and uploads with 503 OVERLOADED while the instance is saturated (measured).
   * On by default, except under NODE_ENV=test: a test suite on a busy machine saturates the event loop
   * of the process it runs in, and its tests of other behaviour must not meet refusals they did not ask
   * for (the shedding tests turn it on).
   */
  @Transform(toBool) @IsBoolean()
  OVERLOAD_SHEDDING = process.env.NODE_ENV !== 'test';

  /** Shedding starts when the event loop's delay p99 over a period reaches this (ms); stops below 40 % of it. */
  @Type(() => Number) @IsInt() @Min(10) @Max(10_000)
  OVERLOAD_EVENT_LOOP_DELAY_MS = 100;

  /** … or its utilization reaches this (0..1); stops 0.2 below it. */
  @Type(() => Number) @Min(0.3) @Max(1)
  OVERLOAD_EVENT_LOOP_UTILIZATION = 0.95;

  /** … or the palette queue is this full (0..1); stops below half of it. */
  @Type(() => Number) @Min(0.01) @Max(1)
  OVERLOAD_PALETTE_QUEUE_FILL = 0.9;

  /**
   * The event-loop signals count only while the process itself uses at least this share of the CPU
   * it may use (all its threads; its cores, or its cgroup quota), or one whole core if that is less:
   * a loop slowed by other processes is not this instance's overload. Calm below 60 % of the line.
   */
  @Type(() => Number) @Min(0.25) @Max(1)
  OVERLOAD_PROCESS_CPU_SHARE = 0.5;

  /** Sampling period (ms); 0 = never sample (tests feed samples themselves). */
  @Type(() => Number) @IsInt() @Min(0) @Max(60_000)
  OVERLOAD_SAMPLE_MS = 250;

  /** Comma-separated allowed origins, `*` for any; empty = CORS off. */
  @Transform(toList) @IsString({ each: true })
  CORS_ORIGINS: string[] = [];
}
