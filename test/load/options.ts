import { parseArgs } from 'node:util';

/** `npm run load -- --help`. Flags win over the `LOAD_*` variables. */
export const USAGE = `Usage: npm run load -- [flag…]

The load harness: starts the Gemini emulator and a fresh service per scenario (or drives --target),
and prints a JSON summary as the last line of stdout. Flags win over the LOAD_* variables.

  --scenarios=a,b       LOAD_SCENARIOS         which scenarios, in order (default: reads, steady, burst, mixed, soak, palette, moonshot;
                                               distributed and overload only when named)
  --profile=short|full  LOAD_PROFILE           short (default, ≤ 3 min, everything scaled down) or full
  --rates=2,5,10        LOAD_RATES             generation arrival rates (/s) of the steady sweep
  --soak-seconds=N      LOAD_SOAK_SECONDS
  --soak-rate=N         LOAD_SOAK_RATE         generations/s of the soak (default 10 full, 5 short)
  --moonshot-rate=N     LOAD_MOONSHOT_RATE     generations/s of the moonshot (default 40)
  --palette-rate=N      LOAD_PALETTE_RATE      palette uploads/s of the inline-vs-pool comparison
  --scale=F             LOAD_SCALE             multiply every scenario duration by F
  --latency=SPEC        LOAD_GEMINI_LATENCY    emulator latency (default lognormal:median=8000,sigma=0.6,max=60000)
  --rate-429=P          LOAD_GEMINI_RATE_429   share of Gemini calls answered 429 (default 0.01)
  --hang-rate=P         LOAD_GEMINI_HANG_RATE  share that never answer (default 0.002)
  --emulator-nice=N     LOAD_EMULATOR_NICE     niceness of the emulator process, 0..19 (default 0)
  --env=K=V             (repeatable)           extra service environment for every scenario
  --node-arg=ARG        (repeatable)           extra node flag for the service (e.g. --node-arg=--max-semi-space-size=64)
  --target=URL          LOAD_TARGET            use this running service instead of starting one
  --metrics-url=URL     LOAD_METRICS_URL       its /metrics (default: same host, port 9464)
  --pid=N               LOAD_PID               its process id, for /proc CPU and RSS (optional)
  --cpu-profile         LOAD_CPU_PROFILE=1     V8 CPU profiles of the service (moonshot, palette runs)
  --memory-detail       LOAD_MEMORY_DETAIL=1   the service samples its own memory by kind every 15 s (memory-probe.ts)
  --report              LOAD_REPORT=1          rewrite docs/capacity/results.md (generated tables) and docs/capacity/*.svg
  --report-from=FILE[,FILE…]                   only regenerate the report from saved results (the first gives the
                                               tables and charts, the others add their profiles)
  --out=FILE            LOAD_OUT               where to save the full results (time series included)
  -h, --help                                   this text

The distributed scenario (--scenarios=distributed; needs nginx, PostgreSQL and redis-server, see
test/load/distributed.ts and docs/scaling.md):
  --distributed-rate=N      LOAD_DISTRIBUTED_RATE     generations/s offered (default 4 short, 8 full)
  --distributed-limit=N     LOAD_DISTRIBUTED_LIMIT    the global GEMINI_MAX_CONCURRENCY (default: what the rate
                                                      keeps ≈ 80 % busy at the emulator's mean latency)
  --distributed-latency=SPEC LOAD_DISTRIBUTED_LATENCY its emulator's latency (default lognormal, median 3 s short / 6 s full)
  --queue-lock-ms=N         LOAD_QUEUE_LOCK_MS        QUEUE_LOCK_MS of the instances (default 5000)
  --distributed-runs=a,b    LOAD_DISTRIBUTED_RUNS     embedded,distributed (default both: the CPU comparison)
  --distributed-restart=B   LOAD_DISTRIBUTED_RESTART  start the killed instance again (default true)

The overload scenario (--scenarios=overload; test/load/overload.ts, docs/capacity/overload.md): a ramp
finds the sustainable rate, then 2× that rate is offered. Run it with --rate-429=0 --hang-rate=0 so
every failed generation is the service's own.
  --overload-ramp=5,10,…    LOAD_OVERLOAD_RAMP        the ramp's rates (/s); none = no ramp (needs --overload-rate)
  --overload-rate=N         LOAD_OVERLOAD_RATE        offer N/s in the overload step instead of 2× the sustainable rate
  --overload-seconds=N      LOAD_OVERLOAD_SECONDS     the overload step's length (default 15 short, 30 full)
  --overload-latency-ms=N   LOAD_OVERLOAD_LATENCY_MS  fixed Gemini latency of its generations (default 2000)
`;

/** A command line the harness cannot run: its message says why; print it with USAGE, no stack trace. */
export class UsageError extends Error {
  override readonly name = 'UsageError';
}

export const SCENARIO_NAMES = ['reads', 'steady', 'burst', 'mixed', 'soak', 'palette', 'moonshot', 'distributed', 'overload'] as const;
export type ScenarioName = (typeof SCENARIO_NAMES)[number];
/**
 * What runs without --scenarios: everything but the distributed scenario, which needs servers beside
 * Node, and the overload scenario, whose ramp alone would take the short profile past 3 minutes.
 */
export const DEFAULT_SCENARIOS: readonly ScenarioName[] = SCENARIO_NAMES.filter((n) => n !== 'distributed' && n !== 'overload');
export const DISTRIBUTED_RUNS = ['embedded', 'distributed'] as const;
export type DistributedRunName = (typeof DISTRIBUTED_RUNS)[number];

export interface DistributedOptions {
  rate: number | undefined;
  limit: number | undefined;
  latency: string | undefined;
  queueLockMs: number;
  runs: DistributedRunName[];
  restart: boolean;
}

export interface OverloadOptions {
  /** undefined: the profile's ramp; []: no ramp. */
  ramp: number[] | undefined;
  rate: number | undefined;
  seconds: number | undefined;
  latencyMs: number;
}

export interface LoadOptions {
  scenarios: ScenarioName[];
  profile: 'short' | 'full';
  rates: number[] | undefined;
  soakSeconds: number | undefined;
  soakRate: number | undefined;
  moonshotRate: number;
  paletteRate: number | undefined;
  scale: number;
  latency: string;
  rate429: number;
  hangRate: number;
  emulatorNice: number;
  serviceEnv: Record<string, string>;
  serviceNodeArgs: string[];
  target: { baseUrl: string; metricsUrl: string; pid: number | undefined } | undefined;
  cpuProfile: boolean;
  memoryDetail: boolean;
  report: boolean;
  reportFrom: string | undefined;
  out: string | undefined;
  distributed: DistributedOptions;
  overload: OverloadOptions;
  /** The command line as typed, for the report. */
  argv: string[];
  /** `--help`: print USAGE and run nothing. */
  help: boolean;
}

export const DEFAULT_LATENCY = 'lognormal:median=8000,sigma=0.6,max=60000';

const STRING_FLAGS = [
  'scenarios', 'profile', 'rates', 'soak-seconds', 'soak-rate', 'moonshot-rate', 'palette-rate', 'scale', 'latency', 'rate-429', 'hang-rate',
  'emulator-nice', 'target', 'metrics-url', 'pid', 'report-from', 'out',
  'distributed-rate', 'distributed-limit', 'distributed-latency', 'queue-lock-ms', 'distributed-runs', 'distributed-restart',
  'overload-ramp', 'overload-rate', 'overload-seconds', 'overload-latency-ms',
] as const;
const REPEATABLE_FLAGS = ['env', 'node-arg'] as const;
const BOOLEAN_FLAGS = ['cpu-profile', 'memory-detail', 'report'] as const;

/** The flags as node:util parseArgs reads them; its errors become UsageErrors with the flag named. */
function readFlags(argv: string[]): { flags: Map<string, string[]>; help: boolean } {
  let parsed: ReturnType<typeof parseArgs>;
  try {
    parsed = parseArgs({
      args: argv,
      strict: true,
      allowPositionals: false,
      options: {
        ...Object.fromEntries(STRING_FLAGS.map((name) => [name, { type: 'string' as const }])),
        ...Object.fromEntries(REPEATABLE_FLAGS.map((name) => [name, { type: 'string' as const, multiple: true }])),
        ...Object.fromEntries(BOOLEAN_FLAGS.map((name) => [name, { type: 'boolean' as const }])),
        help: { type: 'boolean', short: 'h' },
      },
    });
  } catch (error) {
    const { code, message } = error as { code?: string; message: string };
    if (code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION') throw new UsageError(`Unknown flag ${/'([^']+)'/.exec(message)?.[1] ?? message}`);
    if (code === 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL') throw new UsageError(`Unexpected argument ${/'([^']+)'/.exec(message)?.[1] ?? message} (flags look like --name=value)`);
    if (code?.startsWith('ERR_PARSE_ARGS_')) throw new UsageError(message);
    throw error;
  }
  const flags = new Map<string, string[]>();
  for (const [name, value] of Object.entries(parsed.values)) {
    if (name === 'help' || value === undefined) continue;
    flags.set(name, Array.isArray(value) ? value.map(String) : [String(value)]);
  }
  return { flags, help: parsed.values.help === true };
}

/** Reads the command line (node:util parseArgs) and the LOAD_* variables; throws UsageError when they make no sense. */
export function parseOptions(argv: string[], env: Record<string, string | undefined> = process.env): LoadOptions {
  const { flags, help } = readFlags(argv);
  const get = (flag: string, variable: string) => flags.get(flag)?.at(-1) ?? env[variable];
  const num = (flag: string, variable: string, fallback: number, check: (n: number) => boolean) => {
    const text = get(flag, variable);
    if (text === undefined || text === '') return fallback;
    const n = Number(text);
    if (!check(n)) throw new UsageError(`--${flag} / ${variable}: invalid value ${JSON.stringify(text)}`);
    return n;
  };
  const bool = (flag: string, variable: string) => ['1', 'true', 'yes'].includes((get(flag, variable) ?? '').toLowerCase());

  const scenarioText = get('scenarios', 'LOAD_SCENARIOS');
  const scenarios = scenarioText ? scenarioText.split(',').map((s) => s.trim()).filter(Boolean) : [...DEFAULT_SCENARIOS];
  const bad = scenarios.filter((s) => !(SCENARIO_NAMES as readonly string[]).includes(s));
  if (bad.length > 0) throw new UsageError(`Unknown scenario(s) ${bad.join(', ')}; known: ${SCENARIO_NAMES.join(', ')}`);

  const profile = get('profile', 'LOAD_PROFILE') ?? 'short';
  if (profile !== 'short' && profile !== 'full') throw new UsageError(`--profile must be short or full, got ${profile}`);

  const ratesText = get('rates', 'LOAD_RATES');
  const rates = ratesText ? ratesText.split(',').map(Number) : undefined;
  if (rates && rates.some((r) => !(r > 0 && r <= 1000))) throw new UsageError(`--rates: positive numbers ≤ 1000, got ${ratesText}`);

  const serviceEnv: Record<string, string> = {};
  for (const pair of flags.get('env') ?? []) {
    const eq = pair.indexOf('=');
    if (eq <= 0) throw new UsageError(`--env expects KEY=VALUE, got ${pair}`);
    serviceEnv[pair.slice(0, eq)] = pair.slice(eq + 1);
  }

  const targetUrl = get('target', 'LOAD_TARGET');
  let target: LoadOptions['target'];
  if (targetUrl) {
    if (!URL.canParse(targetUrl)) throw new UsageError(`--target / LOAD_TARGET: not a URL: ${JSON.stringify(targetUrl)}`);
    const base = new URL(targetUrl);
    const metricsUrl = get('metrics-url', 'LOAD_METRICS_URL') ?? `${base.protocol}//${base.hostname}:9464/metrics`;
    const pidText = get('pid', 'LOAD_PID');
    target = { baseUrl: base.origin, metricsUrl, pid: pidText ? Number(pidText) : undefined };
  }

  const runsText = get('distributed-runs', 'LOAD_DISTRIBUTED_RUNS');
  const distributedRuns = runsText ? runsText.split(',').map((s) => s.trim()).filter(Boolean) : [...DISTRIBUTED_RUNS];
  const badRuns = distributedRuns.filter((r) => !(DISTRIBUTED_RUNS as readonly string[]).includes(r));
  if (badRuns.length > 0 || distributedRuns.length === 0) throw new UsageError(`--distributed-runs: one or both of ${DISTRIBUTED_RUNS.join(', ')}, got ${runsText}`);
  const restartText = (get('distributed-restart', 'LOAD_DISTRIBUTED_RESTART') ?? 'true').toLowerCase();
  if (!['true', 'false', '1', '0', 'yes', 'no'].includes(restartText)) throw new UsageError(`--distributed-restart: true or false, got ${restartText}`);
  const optionalNum = (flag: string, variable: string, check: (n: number) => boolean) => (get(flag, variable) ? num(flag, variable, 0, check) : undefined);
  const distributed: DistributedOptions = {
    rate: optionalNum('distributed-rate', 'LOAD_DISTRIBUTED_RATE', (n) => n > 0 && n <= 200),
    limit: optionalNum('distributed-limit', 'LOAD_DISTRIBUTED_LIMIT', (n) => Number.isInteger(n) && n >= 1 && n <= 10_000),
    latency: get('distributed-latency', 'LOAD_DISTRIBUTED_LATENCY'),
    // QUEUE_LOCK_MS's own bounds (src/config/env.dto.ts).
    queueLockMs: num('queue-lock-ms', 'LOAD_QUEUE_LOCK_MS', 5000, (n) => Number.isInteger(n) && n >= 1000 && n <= 600_000),
    runs: distributedRuns as DistributedRunName[],
    restart: ['true', '1', 'yes'].includes(restartText),
  };

  const rampText = get('overload-ramp', 'LOAD_OVERLOAD_RAMP');
  let ramp: number[] | undefined;
  if (rampText !== undefined && rampText !== '') {
    ramp = rampText.trim().toLowerCase() === 'none' ? [] : rampText.split(',').map(Number);
    if (ramp.some((r) => !(r > 0 && r <= 1000)) || ramp.some((r, i) => i > 0 && r <= ramp![i - 1])) {
      throw new UsageError(`--overload-ramp: rising positive rates ≤ 1000, or none; got ${rampText}`);
    }
  }
  const overload: OverloadOptions = {
    ramp,
    rate: optionalNum('overload-rate', 'LOAD_OVERLOAD_RATE', (n) => n > 0 && n <= 1000),
    seconds: optionalNum('overload-seconds', 'LOAD_OVERLOAD_SECONDS', (n) => n >= 1 && n <= 3600),
    latencyMs: num('overload-latency-ms', 'LOAD_OVERLOAD_LATENCY_MS', 2000, (n) => Number.isInteger(n) && n >= 0 && n <= 600_000),
  };
  if (ramp && ramp.length === 0 && overload.rate === undefined) throw new UsageError('--overload-ramp=none needs --overload-rate (the step has no sustainable rate to double)');

  const probability = (n: number) => n >= 0 && n <= 1;
  return {
    scenarios: scenarios as ScenarioName[],
    profile,
    rates,
    soakSeconds: get('soak-seconds', 'LOAD_SOAK_SECONDS') ? num('soak-seconds', 'LOAD_SOAK_SECONDS', 0, (n) => n >= 5 && n <= 86_400) : undefined,
    soakRate: get('soak-rate', 'LOAD_SOAK_RATE') ? num('soak-rate', 'LOAD_SOAK_RATE', 0, (n) => n > 0 && n <= 1000) : undefined,
    moonshotRate: num('moonshot-rate', 'LOAD_MOONSHOT_RATE', 40, (n) => n > 0 && n <= 1000),
    paletteRate: get('palette-rate', 'LOAD_PALETTE_RATE') ? num('palette-rate', 'LOAD_PALETTE_RATE', 0, (n) => n > 0 && n <= 1000) : undefined,
    scale: num('scale', 'LOAD_SCALE', 1, (n) => n > 0 && n <= 100),
    latency: get('latency', 'LOAD_GEMINI_LATENCY') ?? DEFAULT_LATENCY,
    rate429: num('rate-429', 'LOAD_GEMINI_RATE_429', 0.01, probability),
    hangRate: num('hang-rate', 'LOAD_GEMINI_HANG_RATE', 0.002, probability),
    emulatorNice: num('emulator-nice', 'LOAD_EMULATOR_NICE', 0, (n) => Number.isInteger(n) && n >= 0 && n <= 19),
    serviceEnv,
    serviceNodeArgs: flags.get('node-arg') ?? [],
    target,
    cpuProfile: bool('cpu-profile', 'LOAD_CPU_PROFILE'),
    memoryDetail: bool('memory-detail', 'LOAD_MEMORY_DETAIL'),
    report: bool('report', 'LOAD_REPORT'),
    reportFrom: get('report-from', 'LOAD_REPORT_FROM'),
    out: get('out', 'LOAD_OUT'),
    distributed,
    overload,
    argv,
    help,
  };
}

/**
 * What `npm run load` makes of its command line: the options to run with, or the exit code once it
 * has printed what to do instead: `--help` → USAGE on stdout, 0; a command line it cannot run →
 * the reason and USAGE on stderr, 2 (never a stack trace).
 */
export function parseCommandLine(
  argv: string[],
  env: Record<string, string | undefined>,
  print: { out(text: string): void; err(text: string): void },
): LoadOptions | number {
  let opts: LoadOptions;
  try {
    opts = parseOptions(argv, env);
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    print.err(`npm run load: ${error.message}\n\n${USAGE}`);
    return 2;
  }
  if (!opts.help) return opts;
  print.out(USAGE);
  return 0;
}
