import { availableParallelism } from 'node:os';
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { plainToInstance } from 'class-transformer';
import { validateSync, ValidationError } from 'class-validator';
import type { EnvDto as EnvDtoType } from './env.dto';
import { EnvDto } from './env.dto';

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
  readonly dataDir: string;
  readonly database: { busyTimeoutMs: number };
  readonly gemini: {
    apiKey: string | undefined;
    baseUrl: string | undefined;
    model: string;
    timeoutMs: number;
    /** Bound on all attempts of one call together. */
    deadlineMs: number;
    maxConcurrency: number;
    maxRetries: number;
    /** True when neither a key nor a base URL is set: the bundled emulator is started in-process. */
    useEmulator: boolean;
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
  readonly palette: { workers: number; maxQueue: number; mode: 'pool' | 'inline' };
  readonly metrics: { port: number };
  readonly telemetry: { disabled: boolean; serviceName: string; otlpEndpoint: string | undefined };
  readonly http: { apiKeys: string[]; rateLimitPerMinute: number; corsOrigins: string[] };
  readonly logLevel: string;
  /** The package version (OpenAPI document, telemetry resource). */
  readonly version: string = packageVersion();

  constructor(env: EnvDtoType) {
    this.port = env.PORT;
    this.dataDir = resolve(env.DATA_DIR);
    this.database = { busyTimeoutMs: env.DATABASE_BUSY_TIMEOUT_MS };
    this.gemini = {
      apiKey: env.GEMINI_API_KEY,
      baseUrl: env.GEMINI_BASE_URL,
      model: env.GEMINI_MODEL,
      timeoutMs: env.GEMINI_TIMEOUT_MS,
      deadlineMs: env.GEMINI_JOB_DEADLINE_MS ?? env.GEMINI_TIMEOUT_MS * (env.GEMINI_MAX_RETRIES + 1) + 5_000,
      maxConcurrency: env.GEMINI_MAX_CONCURRENCY,
      maxRetries: env.GEMINI_MAX_RETRIES,
      useEmulator: env.GEMINI_API_KEY === undefined && env.GEMINI_BASE_URL === undefined,
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
      maxQueue: env.PALETTE_MAX_QUEUE,
      mode: env.PALETTE_MODE,
    };
    this.metrics = { port: env.METRICS_PORT };
    this.telemetry = {
      disabled: env.OTEL_SDK_DISABLED,
      serviceName: env.OTEL_SERVICE_NAME,
      otlpEndpoint: env.OTEL_EXPORTER_OTLP_ENDPOINT,
    };
    this.http = {
      apiKeys: env.API_KEYS,
      rateLimitPerMinute: env.RATE_LIMIT_PER_MINUTE,
      corsOrigins: env.CORS_ORIGINS,
    };
    this.logLevel = env.LOG_LEVEL;
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

function describe(errors: ValidationError[], prefix = ''): string[] {
  return errors.flatMap((e) => {
    const own = Object.values(e.constraints ?? {}).map((msg) => `${prefix}${e.property}: ${msg} (got ${JSON.stringify(e.value)})`);
    return [...own, ...describe(e.children ?? [], `${prefix}${e.property}.`)];
  });
}

/** Validates `env` (default `process.env`) and returns the typed config, or throws one ConfigError naming every bad variable. */
export function loadConfig(env: Record<string, string | undefined> = process.env): AppConfig {
  const known = Object.fromEntries(Object.entries(env).filter(([, v]) => v !== undefined));
  const dto = plainToInstance(EnvDto, known, { exposeDefaultValues: true });
  const errors = validateSync(dto, { whitelist: false });
  if (errors.length > 0) throw new ConfigError(describe(errors));
  return new AppConfig(dto);
}

let cached: AppConfig | undefined;
/** The process-wide config, validated once (used by main.ts and telemetry.ts before DI exists). */
export function getConfig(): AppConfig {
  cached ??= loadConfig();
  return cached;
}
