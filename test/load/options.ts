/**
 * Command line and environment of `npm run load` (flags win over `LOAD_*` variables):
 *
 *   --scenarios=a,b     LOAD_SCENARIOS   which scenarios, in order (default: all, see SCENARIO_NAMES)
 *   --profile=short|full LOAD_PROFILE    short (default, ≤ 3 min, everything scaled down) or full
 *   --rates=2,5,10      LOAD_RATES       generation arrival rates (/s) of the steady sweep
 *   --soak-seconds=N    LOAD_SOAK_SECONDS
 *   --soak-rate=N       LOAD_SOAK_RATE   generations/s of the soak (default 10 full, 5 short)
 *   --moonshot-rate=N   LOAD_MOONSHOT_RATE   generations/s of the moonshot (default 40)
 *   --palette-rate=N    LOAD_PALETTE_RATE    palette uploads/s of the inline-vs-pool comparison
 *   --scale=F           LOAD_SCALE       multiply every scenario duration by F
 *   --latency=SPEC      LOAD_GEMINI_LATENCY  emulator latency (default lognormal:median=8000,sigma=0.6,max=60000)
 *   --rate-429=P        LOAD_GEMINI_RATE_429   share of Gemini calls answered 429 (default 0.01)
 *   --hang-rate=P       LOAD_GEMINI_HANG_RATE  share that never answer (default 0.002)
 *   --emulator-nice=N   LOAD_EMULATOR_NICE     niceness of the emulator process, 0..19 (default 0: same priority as the service)
 *   --env=K=V           (repeatable)     extra service environment for every scenario
 *   --node-arg=ARG      (repeatable)     extra `node` flag for the service (e.g. --max-semi-space-size=64)
 *   --target=URL        LOAD_TARGET      use this running service instead of starting one
 *   --metrics-url=URL   LOAD_METRICS_URL its /metrics (default: same host, port 9464)
 *   --pid=N             LOAD_PID         its process id, for /proc CPU and RSS (optional)
 *   --cpu-profile       LOAD_CPU_PROFILE=1  V8 CPU profiles of the service (moonshot, palette runs)
 *   --memory-detail     LOAD_MEMORY_DETAIL=1 the service samples its own memory by kind (V8 spaces, workers,
 *                                        Buffers, malloc; memory-probe.ts) every 15 s: a table per run
 *   --report            LOAD_REPORT=1    rewrite the generated part of docs/capacity.md and docs/capacity/*.svg
 *   --report-from=FILE[,FILE…]           only regenerate the report from saved results: the first gives the
 *                                        tables and charts, the others add their profiles (e.g. a --cpu-profile run)
 *   --out=FILE          LOAD_OUT         where to save the full results (time series included)
 *
 * The distributed scenario (not in the default set: it needs nginx, PostgreSQL and redis-server; see
 * distributed.ts and docs/scaling.md):
 *   --distributed-rate=N     LOAD_DISTRIBUTED_RATE     generations/s offered (default 4 short, 8 full)
 *   --distributed-limit=N    LOAD_DISTRIBUTED_LIMIT    the global GEMINI_MAX_CONCURRENCY (default: what
 *                                                      the rate keeps ≈ 80 % busy at the emulator's mean latency)
 *   --distributed-latency=SPEC LOAD_DISTRIBUTED_LATENCY its emulator's latency (default lognormal, median
 *                                                      3 s short / 6 s full)
 *   --queue-lock-ms=N        LOAD_QUEUE_LOCK_MS        QUEUE_LOCK_MS of the instances (default 5000)
 *   --distributed-runs=a,b   LOAD_DISTRIBUTED_RUNS     embedded,distributed (default both: the CPU comparison)
 *   --distributed-restart=B  LOAD_DISTRIBUTED_RESTART  start the killed instance again (default true)
 */

export const SCENARIO_NAMES = ['reads', 'steady', 'burst', 'mixed', 'soak', 'palette', 'moonshot', 'distributed'] as const;
export type ScenarioName = (typeof SCENARIO_NAMES)[number];
/** What runs without --scenarios: everything but the distributed scenario, which needs servers beside Node. */
export const DEFAULT_SCENARIOS: readonly ScenarioName[] = SCENARIO_NAMES.filter((n) => n !== 'distributed');
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
  /** The command line as typed, for the report. */
  argv: string[];
}

export const DEFAULT_LATENCY = 'lognormal:median=8000,sigma=0.6,max=60000';

export function parseOptions(argv: string[], env: Record<string, string | undefined> = process.env): LoadOptions {
  const flags = new Map<string, string[]>();
  for (const arg of argv) {
    const match = /^--([a-z0-9-]+)(?:=(.*))?$/s.exec(arg);
    if (!match) throw new Error(`Unknown argument ${JSON.stringify(arg)} (flags look like --name=value)`);
    const list = flags.get(match[1]) ?? [];
    list.push(match[2] ?? 'true');
    flags.set(match[1], list);
  }
  const known = new Set([
    'scenarios', 'profile', 'rates', 'soak-seconds', 'soak-rate', 'moonshot-rate', 'palette-rate', 'scale', 'latency', 'rate-429', 'hang-rate', 'emulator-nice',
    'env', 'node-arg', 'target', 'metrics-url', 'pid', 'cpu-profile', 'memory-detail', 'report', 'report-from', 'out',
    'distributed-rate', 'distributed-limit', 'distributed-latency', 'queue-lock-ms', 'distributed-runs', 'distributed-restart',
  ]);
  const unknown = [...flags.keys()].filter((k) => !known.has(k));
  if (unknown.length > 0) throw new Error(`Unknown flag(s): ${unknown.map((k) => `--${k}`).join(', ')}`);
  const get = (flag: string, variable: string) => flags.get(flag)?.at(-1) ?? env[variable];
  const num = (flag: string, variable: string, fallback: number, check: (n: number) => boolean) => {
    const text = get(flag, variable);
    if (text === undefined || text === '') return fallback;
    const n = Number(text);
    if (!check(n)) throw new Error(`--${flag} / ${variable}: invalid value ${JSON.stringify(text)}`);
    return n;
  };
  const bool = (flag: string, variable: string) => ['1', 'true', 'yes'].includes((get(flag, variable) ?? '').toLowerCase());

  const scenarioText = get('scenarios', 'LOAD_SCENARIOS');
  const scenarios = scenarioText ? scenarioText.split(',').map((s) => s.trim()).filter(Boolean) : [...DEFAULT_SCENARIOS];
  const bad = scenarios.filter((s) => !(SCENARIO_NAMES as readonly string[]).includes(s));
  if (bad.length > 0) throw new Error(`Unknown scenario(s) ${bad.join(', ')}; known: ${SCENARIO_NAMES.join(', ')}`);

  const profile = get('profile', 'LOAD_PROFILE') ?? 'short';
  if (profile !== 'short' && profile !== 'full') throw new Error(`--profile must be short or full, got ${profile}`);

  const ratesText = get('rates', 'LOAD_RATES');
  const rates = ratesText ? ratesText.split(',').map(Number) : undefined;
  if (rates && rates.some((r) => !(r > 0 && r <= 1000))) throw new Error(`--rates: positive numbers ≤ 1000, got ${ratesText}`);

  const serviceEnv: Record<string, string> = {};
  for (const pair of flags.get('env') ?? []) {
    const eq = pair.indexOf('=');
    if (eq <= 0) throw new Error(`--env expects KEY=VALUE, got ${pair}`);
    serviceEnv[pair.slice(0, eq)] = pair.slice(eq + 1);
  }

  const targetUrl = get('target', 'LOAD_TARGET');
  let target: LoadOptions['target'];
  if (targetUrl) {
    const base = new URL(targetUrl);
    const metricsUrl = get('metrics-url', 'LOAD_METRICS_URL') ?? `${base.protocol}//${base.hostname}:9464/metrics`;
    const pidText = get('pid', 'LOAD_PID');
    target = { baseUrl: base.origin, metricsUrl, pid: pidText ? Number(pidText) : undefined };
  }

  const runsText = get('distributed-runs', 'LOAD_DISTRIBUTED_RUNS');
  const distributedRuns = runsText ? runsText.split(',').map((s) => s.trim()).filter(Boolean) : [...DISTRIBUTED_RUNS];
  const badRuns = distributedRuns.filter((r) => !(DISTRIBUTED_RUNS as readonly string[]).includes(r));
  if (badRuns.length > 0 || distributedRuns.length === 0) throw new Error(`--distributed-runs: one or both of ${DISTRIBUTED_RUNS.join(', ')}, got ${runsText}`);
  const restartText = (get('distributed-restart', 'LOAD_DISTRIBUTED_RESTART') ?? 'true').toLowerCase();
  if (!['true', 'false', '1', '0', 'yes', 'no'].includes(restartText)) throw new Error(`--distributed-restart: true or false, got ${restartText}`);
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
    argv,
  };
}
