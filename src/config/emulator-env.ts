import { ConfigError } from './app-config';

/** How long the emulator waits before answering. */
export type LatencySpec =
  | { kind: 'fixed'; ms: number }
  | { kind: 'uniform'; minMs: number; maxMs: number }
  /** `median * exp(sigma * N(0,1))`, capped at `maxMs`: the long right tail real image models show. */
  | { kind: 'lognormal'; medianMs: number; sigma: number; maxMs: number };

/** Probabilities (0..1) of each fault per request; they are drawn from one roll, so their sum is ≤ 1. */
export interface EmulatorFaultRates {
  rate429: number;
  rate500: number;
  rate503: number;
  hangRate: number;
  blockRate: number;
  textOnlyRate: number;
}

/** The standalone emulator's settings, as read from `EMULATOR_*` variables. */
export interface EmulatorEnv extends EmulatorFaultRates {
  port: number;
  host: string;
  latency: LatencySpec;
  seed: number | undefined;
}

const MAX_LATENCY_MS = 3_600_000;

function parseMs(text: string): number | undefined {
  if (!/^\d+$/.test(text.trim())) return undefined;
  const ms = Number(text);
  return ms <= MAX_LATENCY_MS ? ms : undefined;
}

/**
 * Parses `fixed:200`, `uniform:100-500` or `lognormal:median=8000,sigma=0.6,max=60000`
 * (a bare number means `fixed:N`). Returns an error text instead of throwing so the caller can
 * report every bad variable at once.
 */
export function parseLatencySpec(text: string): LatencySpec | string {
  const [kind, args = ''] = text.trim().split(/:(.*)/s);
  const bare = parseMs(kind);
  if (bare !== undefined && args === '') return { kind: 'fixed', ms: bare };
  if (kind === 'fixed') {
    const ms = parseMs(args);
    return ms === undefined ? `fixed needs milliseconds 0..${MAX_LATENCY_MS}, e.g. fixed:200` : { kind, ms };
  }
  if (kind === 'uniform') {
    const [min, max] = args.split('-').map(parseMs);
    if (min === undefined || max === undefined || min > max) return 'uniform needs MIN-MAX milliseconds with MIN ≤ MAX, e.g. uniform:100-500';
    return { kind, minMs: min, maxMs: max };
  }
  if (kind === 'lognormal') {
    const fields = Object.fromEntries(args.split(',').map((kv) => kv.split('=').map((s) => s.trim())));
    const medianMs = parseMs(fields.median ?? '');
    const sigma = Number(fields.sigma);
    const maxMs = fields.max === undefined ? 600_000 : parseMs(fields.max);
    const unknown = Object.keys(fields).filter((k) => !['median', 'sigma', 'max'].includes(k));
    if (medianMs === undefined || !(sigma >= 0 && sigma <= 5) || maxMs === undefined || unknown.length > 0) {
      return 'lognormal needs median=MS,sigma=0..5[,max=MS], e.g. lognormal:median=8000,sigma=0.6,max=60000';
    }
    return { kind, medianMs, sigma, maxMs };
  }
  return 'expected fixed:MS, uniform:MIN-MAX or lognormal:median=MS,sigma=S,max=MS';
}

const RATE_VARS: Record<keyof EmulatorFaultRates, string> = {
  rate429: 'EMULATOR_RATE_429',
  rate500: 'EMULATOR_RATE_500',
  rate503: 'EMULATOR_RATE_503',
  hangRate: 'EMULATOR_HANG_RATE',
  blockRate: 'EMULATOR_BLOCK_RATE',
  textOnlyRate: 'EMULATOR_TEXT_ONLY_RATE',
};

/**
 * Reads the standalone emulator's `EMULATOR_*` variables (default `process.env`), or throws one
 * ConfigError naming every bad variable.
 */
export function loadEmulatorEnv(env: Record<string, string | undefined> = process.env): EmulatorEnv {
  const problems: string[] = [];
  const get = (name: string) => {
    const value = env[name]?.trim();
    return value === undefined || value === '' ? undefined : value;
  };
  const bad = (name: string, rule: string) => problems.push(`${name}: ${rule} (got ${JSON.stringify(env[name])})`);

  let port = 8089;
  const portText = get('EMULATOR_PORT');
  if (portText !== undefined) {
    port = Number(portText);
    if (!/^\d+$/.test(portText) || port > 65535) bad('EMULATOR_PORT', 'must be an integer 0..65535');
  }

  const host = get('EMULATOR_HOST') ?? '127.0.0.1';

  let latency: LatencySpec = { kind: 'fixed', ms: 0 };
  const latencyText = get('EMULATOR_LATENCY');
  const latencyMsText = get('EMULATOR_LATENCY_MS');
  if (latencyText !== undefined && latencyMsText !== undefined) {
    bad('EMULATOR_LATENCY_MS', 'set either EMULATOR_LATENCY or EMULATOR_LATENCY_MS, not both');
  } else if (latencyText !== undefined) {
    const parsed = parseLatencySpec(latencyText);
    if (typeof parsed === 'string') bad('EMULATOR_LATENCY', parsed);
    else latency = parsed;
  } else if (latencyMsText !== undefined) {
    const ms = parseMs(latencyMsText);
    if (ms === undefined) bad('EMULATOR_LATENCY_MS', `must be an integer 0..${MAX_LATENCY_MS}`);
    else latency = { kind: 'fixed', ms };
  }

  const rates = {} as EmulatorFaultRates;
  for (const [key, name] of Object.entries(RATE_VARS) as [keyof EmulatorFaultRates, string][]) {
    const text = get(name);
    const rate = text === undefined ? 0 : Number(text);
    if (!(rate >= 0 && rate <= 1)) bad(name, 'must be a probability 0..1');
    rates[key] = rate >= 0 && rate <= 1 ? rate : 0;
  }
  const sum = Object.values(rates).reduce((a, b) => a + b, 0);
  if (sum > 1 + 1e-9) problems.push(`${Object.values(RATE_VARS).join(' + ')}: must sum to at most 1 (got ${sum})`);

  let seed: number | undefined;
  const seedText = get('EMULATOR_SEED');
  if (seedText !== undefined) {
    seed = Number(seedText);
    if (!/^\d+$/.test(seedText) || seed > 0xffffffff) bad('EMULATOR_SEED', 'must be an integer 0..4294967295');
  }

  if (problems.length > 0) throw new ConfigError(problems);
  return { port, host, latency, seed, ...rates };
}
