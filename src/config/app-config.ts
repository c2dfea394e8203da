import { availableParallelism, tmpdir } from 'node:os';
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { plainToInstance } from 'class-transformer';
import { validateSync, ValidationError } from 'class-validator';
import type { EnvDto as EnvDtoType } from './env.dto';
import { EnvDto } from './env.dto';
import { ApiKeyEntry, parseApiKeys } from './api-keys';
import { redactUrl } from './database-url';
import { TelemetryConfig, telemetryConfig } from './telemetry-config';
import { essentialMessages } from '../common/validation-messages';

/** Request headers are a few hundred bytes: whoever needs longer to send them is holding the socket. */
const HEADERS_TIMEOUT_MS = 10_000;

const MB = 1024 * 1024;

/** Thrown when the environment is invalid; its message names every bad variable. */
export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`Invalid configuration:\n  - ${problems.join('\n  - ')}`);
    this.name = 'ConfigError';
  }
}

/** The typed, validated configuration. Inject `AppConfig`; build one with `loadConfig()`. */
export class AppConfig {
  readonly port: number;
  /** Interface the API listens on. */
  readonly host: string;
  readonly dataDir: string;
  readonly gemini: {
    apiKey: string | undefined;
    baseUrl: string | undefined;
    model: string;
    timeoutMs: number;
    /** Bound on all attempts of one call together. */
    deadlineMs: number;
    maxConcurrency: number;
    maxRetries: number;
    /** Calls started per minute; 0 = no limit. */
    ratePerMinute: number;
  };
  readonly pipeline: { maxQueue: number; drainMs: number };
  readonly s3: {
    bucket: string;
    endpoint: string | undefined;
    region: string | undefined;
    forcePathStyle: boolean;
    presign: boolean;
  } | null;
  /** `mode` inline runs palette tasks on the main thread (load-test comparison only; see EnvDto.PALETTE_MODE). */
  readonly palette: {
    workers: number;
    /** Added to each worker thread's nice value (0 = the event loop's priority); see EnvDto.PALETTE_WORKER_NICE. */
    workerNice: number;
    /** Which threads workerNice applies to; see EnvDto.PALETTE_NICE_THREADS. */
    niceThreads: 'workers' | 'all';
    /** libvips threads per operation in a worker (sharp.concurrency; 0 = libvips' default). */
    libvipsThreads: number;
    maxQueue: number;
    mode: 'pool' | 'inline';
    /** From entering the pool to the answer; see EnvDto.PALETTE_TASK_TIMEOUT_MS. */
    taskTimeoutMs: number;
    /** width × height × channels × bytes per sample of the largest image decoded. */
    maxDecodedBytes: number;
  };
  /** Multipart uploads: streamed to files in `tmpDir`, at most `maxInflightBytes` (declared) at once. */
  readonly uploads: { tmpDir: string; maxInflightBytes: number };
  /** The Prometheus endpoint's port (0: none) and interface. */
  readonly metrics: { port: number; host: string };
  readonly telemetry: TelemetryConfig;
  readonly http: {
    apiKeys: ApiKeyEntry[];
    rateLimitPerMinute: number;
    corsOrigins: string[];
    /** Node's `server.requestTimeout`: the whole request must arrive within it. */
    requestTimeoutMs: number;
    /** Node's `server.headersTimeout`: the headers must arrive within it (≤ requestTimeoutMs). */
    headersTimeoutMs: number;
    keepAliveTimeoutMs: number;
  };
  /** Caps on open Server-Sent Event streams. */
  readonly eventStreams: { maxPerClient: number; maxTotal: number };
  /** Fair shares: what one client (key, or address without keys) may hold at once. */
  readonly fairness: { maxActivePerClient: number; geminiConcurrencyPerClient: number };
  /**
   * `url` unset → SQLite in `dataDir`; set → PostgreSQL with a pool of `poolSize` connections.
   * `statementTimeoutMs` 0 = no limit.
   */
  readonly database: {
    url: string | undefined;
    poolSize: number;
    connectTimeoutMs: number;
    statementTimeoutMs: number;
    /** SQLite: how long a statement waits for another process's lock (without blocking the event loop). */
    busyTimeoutMs: number;
  };
  /**
   * `redisUrl` unset → embedded: in-process queue, events and Gemini quota. Set → distributed: BullMQ
   * in Redis, events over pub/sub, a global quota; `role` says what this instance does.
   */
  readonly queue: {
    redisUrl: string | undefined;
    prefix: string;
    role: 'all' | 'api' | 'worker';
    workerConcurrency: number;
    lockMs: number;
    maxTakeovers: number;
  };
  /** Admission by measured saturation (see LoadShedder). */
  readonly overload: {
    enabled: boolean;
    eventLoopDelayMs: number;
    eventLoopUtilization: number;
    paletteQueueFill: number;
    processCpuShare: number;
    sampleMs: number;
  };
  readonly logLevel: string;
  /** The package version (OpenAPI document, telemetry resource). */
  readonly version: string = packageVersion();

  constructor(env: EnvDtoType) {
    this.port = env.PORT;
    this.host = env.HOST;
    this.dataDir = resolve(env.DATA_DIR);
    this.gemini = {
      apiKey: env.GEMINI_API_KEY,
      baseUrl: env.GEMINI_BASE_URL,
      model: env.GEMINI_MODEL,
      timeoutMs: env.GEMINI_TIMEOUT_MS,
      deadlineMs: env.GEMINI_JOB_DEADLINE_MS ?? env.GEMINI_TIMEOUT_MS * (env.GEMINI_MAX_RETRIES + 1) + 5_000,
      maxConcurrency: env.GEMINI_MAX_CONCURRENCY,
      maxRetries: env.GEMINI_MAX_RETRIES,
      ratePerMinute: env.GEMINI_RATE_LIMIT_PER_MINUTE,
    };
    this.pipeline = { maxQueue: env.PIPELINE_MAX_QUEUE, drainMs: env.SHUTDOWN_DRAIN_MS };
    this.s3 = env.S3_BUCKET
      ? {
          bucket: env.S3_BUCKET,
          endpoint: env.S3_ENDPOINT,
          region: env.S3_REGION,
          forcePathStyle: env.S3_FORCE_PATH_STYLE,
          presign: env.S3_PRESIGN,
        }
      : null;
    this.palette = {
      workers: env.PALETTE_WORKERS ?? availableParallelism(),
      workerNice: env.PALETTE_WORKER_NICE,
      niceThreads: env.PALETTE_NICE_THREADS,
      libvipsThreads: env.PALETTE_LIBVIPS_THREADS,
      maxQueue: env.PALETTE_MAX_QUEUE,
      mode: env.PALETTE_MODE,
      taskTimeoutMs: env.PALETTE_TASK_TIMEOUT_MS,
      maxDecodedBytes: env.PALETTE_MAX_DECODED_MB * MB,
    };
    this.uploads = {
      tmpDir: resolve(env.UPLOAD_TMP_DIR ?? join(tmpdir(), 'hybrid-image-search-uploads')),
      maxInflightBytes: env.UPLOAD_MAX_INFLIGHT_MB * MB,
    };
    this.metrics = { port: env.METRICS_PORT, host: env.METRICS_HOST };
    this.telemetry = telemetryConfig(env);
    this.http = {
      apiKeys: parseApiKeys(env.API_KEYS).keys,
      rateLimitPerMinute: env.RATE_LIMIT_PER_MINUTE,
      corsOrigins: env.CORS_ORIGINS,
      requestTimeoutMs: env.HTTP_REQUEST_TIMEOUT_MS,
      headersTimeoutMs: Math.min(HEADERS_TIMEOUT_MS, env.HTTP_REQUEST_TIMEOUT_MS),
      keepAliveTimeoutMs: env.HTTP_KEEP_ALIVE_TIMEOUT_MS,
    };
    this.fairness = {
      maxActivePerClient: env.MAX_ACTIVE_GENERATIONS_PER_CLIENT,
      geminiConcurrencyPerClient: Math.min(
        env.GEMINI_MAX_CONCURRENCY,
        env.GEMINI_MAX_CONCURRENCY_PER_CLIENT ?? Math.ceil(env.GEMINI_MAX_CONCURRENCY / 2),
      ),
    };
    this.eventStreams = { maxPerClient: env.SSE_MAX_STREAMS_PER_CLIENT, maxTotal: env.SSE_MAX_STREAMS };
    this.database = {
      url: env.DATABASE_URL,
      poolSize: env.DATABASE_POOL_SIZE,
      connectTimeoutMs: env.DATABASE_CONNECT_TIMEOUT_MS,
      statementTimeoutMs: env.DATABASE_STATEMENT_TIMEOUT_MS,
      busyTimeoutMs: env.DATABASE_BUSY_TIMEOUT_MS,
    };
    this.queue = {
      redisUrl: env.REDIS_URL,
      prefix: env.REDIS_PREFIX,
      role: env.ROLE,
      workerConcurrency: env.WORKER_CONCURRENCY ?? Math.min(64, 2 * env.GEMINI_MAX_CONCURRENCY),
      lockMs: env.QUEUE_LOCK_MS,
      maxTakeovers: env.QUEUE_MAX_TAKEOVERS,
    };
    this.overload = {
      enabled: env.OVERLOAD_SHEDDING,
      eventLoopDelayMs: env.OVERLOAD_EVENT_LOOP_DELAY_MS,
      eventLoopUtilization: env.OVERLOAD_EVENT_LOOP_UTILIZATION,
      paletteQueueFill: env.OVERLOAD_PALETTE_QUEUE_FILL,
      processCpuShare: env.OVERLOAD_PROCESS_CPU_SHARE,
      sampleMs: env.OVERLOAD_SAMPLE_MS,
    };
    this.logLevel = env.LOG_LEVEL;
  }

  /** True when jobs, events and the Gemini quota are shared through Redis. */
  get distributed(): boolean {
    return this.queue.redisUrl !== undefined;
  }
}

function packageVersion(): string {
  // src/config/ and dist/config/ both sit two levels below the package root.
  try {
    return (JSON.parse(readFileSync(join(__dirname, '..', '..', 'package.json'), 'utf8')) as { version: string }).version;
  } catch {
    return '0.0.0';
  }
}

/** Variables whose value may carry a password: shown redacted in error messages. */
const URL_WITH_SECRETS = new Set(['DATABASE_URL', 'REDIS_URL']);
/** Variables that are secrets: their value is never shown. */
const SECRETS = new Set(['GEMINI_API_KEY', 'API_KEYS']);

/** What was given for `name`, as the message shows it: the text as set (a number that failed to parse is not `null`). */
function shownValue(name: string, raw: Record<string, string>): string {
  const value = raw[name];
  if (value === undefined) return 'nothing';
  if (SECRETS.has(name)) return '***';
  return JSON.stringify(URL_WITH_SECRETS.has(name) ? redactUrl(value) : value);
}

function describe(errors: ValidationError[], raw: Record<string, string>): string[] {
  return errors.flatMap((e) => essentialMessages(e.constraints).map((msg) => `${e.property}: ${msg} (got ${shownValue(e.property, raw)})`));
}

/** Validates `env` (default `process.env`) and returns the typed config, or throws one ConfigError naming every bad variable. */
export function loadConfig(env: Record<string, string | undefined> = process.env): AppConfig {
  const known = Object.fromEntries(Object.entries(env).filter((entry): entry is [string, string] => entry[1] !== undefined));
  const dto = plainToInstance(EnvDto, known, { exposeDefaultValues: true });
  const errors = validateSync(dto, { whitelist: false });
  if (errors.length > 0) throw new ConfigError(describe(errors, known));
  const problems = [...parseApiKeys(dto.API_KEYS).problems, ...deploymentProblems(dto)];
  if (problems.length > 0) throw new ConfigError(problems);
  return new AppConfig(dto);
}

/**
 * Combinations that are valid one by one but would lose data or break the quota with several
 * instances, each naming the variables involved.
 */
function deploymentProblems(env: EnvDtoType): string[] {
  const problems: string[] = [];
  if (env.REDIS_URL && !env.DATABASE_URL) {
    problems.push(
      'REDIS_URL is set without DATABASE_URL: instances sharing one queue must share one database (each would keep its records in its own SQLite file, and a job run by one instance would be lost to the others); set DATABASE_URL to a PostgreSQL server',
    );
  }
  if (env.NODE_ENV === 'production' && env.ROLE !== 'api' && !env.GEMINI_API_KEY && !env.GEMINI_BASE_URL) {
    problems.push(
      'NODE_ENV=production without GEMINI_API_KEY or GEMINI_BASE_URL: this instance would call the bundled emulator and serve its synthetic test pictures; set GEMINI_API_KEY (or GEMINI_BASE_URL to a Gemini-compatible endpoint)',
    );
  }
  if (!env.REDIS_URL && env.ROLE !== 'all') {
    problems.push(
      `ROLE=${env.ROLE} needs REDIS_URL: without a shared queue ${env.ROLE === 'api' ? 'no worker would ever run the generations this instance accepts' : 'no instance could give this worker jobs'}`,
    );
  }
  return problems;
}

let cached: AppConfig | undefined;
/** The process-wide config, validated once (used by main.ts and telemetry.ts before DI exists). */
export function getConfig(): AppConfig {
  cached ??= loadConfig();
  return cached;
}
