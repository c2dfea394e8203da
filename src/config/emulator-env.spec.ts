import { ConfigError } from './app-config';
import { loadEmulatorEnv, parseLatencySpec } from './emulator-env';

describe('loadEmulatorEnv', () => {
  it('defaults: port 8089 on 127.0.0.1, no latency, no faults', () => {
    expect(loadEmulatorEnv({})).toEqual({
      port: 8089,
      host: '127.0.0.1',
      latency: { kind: 'fixed', ms: 0 },
      seed: undefined,
      rate429: 0,
      rate500: 0,
      rate503: 0,
      hangRate: 0,
      blockRate: 0,
      textOnlyRate: 0,
    });
  });

  it('reads every variable', () => {
    expect(
      loadEmulatorEnv({
        EMULATOR_PORT: '0',
        EMULATOR_HOST: '0.0.0.0',
        EMULATOR_LATENCY: 'lognormal:median=8000,sigma=0.6,max=60000',
        EMULATOR_RATE_429: '0.1',
        EMULATOR_RATE_500: '0.05',
        EMULATOR_RATE_503: '0.05',
        EMULATOR_HANG_RATE: '0.01',
        EMULATOR_BLOCK_RATE: '0.02',
        EMULATOR_TEXT_ONLY_RATE: '0.03',
        EMULATOR_SEED: '42',
      }),
    ).toEqual({
      port: 0,
      host: '0.0.0.0',
      latency: { kind: 'lognormal', medianMs: 8000, sigma: 0.6, maxMs: 60000 },
      seed: 42,
      rate429: 0.1,
      rate500: 0.05,
      rate503: 0.05,
      hangRate: 0.01,
      blockRate: 0.02,
      textOnlyRate: 0.03,
    });
    expect(loadEmulatorEnv({ EMULATOR_LATENCY_MS: '250' }).latency).toEqual({ kind: 'fixed', ms: 250 });
  });

  it('names every bad variable in one error', () => {
    let error: unknown;
    try {
      loadEmulatorEnv({
        EMULATOR_PORT: '70000',
        EMULATOR_LATENCY: 'gaussian:5',
        EMULATOR_RATE_429: '1.5',
        EMULATOR_HANG_RATE: 'often',
        EMULATOR_SEED: '-1',
      });
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(ConfigError);
    for (const name of ['EMULATOR_PORT', 'EMULATOR_LATENCY', 'EMULATOR_RATE_429', 'EMULATOR_HANG_RATE', 'EMULATOR_SEED']) {
      expect((error as Error).message).toContain(name);
    }
  });

  it('refuses rates that add up to more than 1, and both latency variables at once', () => {
    expect(() => loadEmulatorEnv({ EMULATOR_RATE_429: '0.6', EMULATOR_RATE_500: '0.6' })).toThrow(/sum to at most 1/);
    expect(() => loadEmulatorEnv({ EMULATOR_LATENCY: 'fixed:1', EMULATOR_LATENCY_MS: '1' })).toThrow(/EMULATOR_LATENCY_MS/);
  });
});

describe('parseLatencySpec', () => {
  it.each([
    ['fixed:200', { kind: 'fixed', ms: 200 }],
    ['150', { kind: 'fixed', ms: 150 }],
    ['uniform:100-500', { kind: 'uniform', minMs: 100, maxMs: 500 }],
    ['lognormal:median=8000,sigma=0.6', { kind: 'lognormal', medianMs: 8000, sigma: 0.6, maxMs: 600000 }],
  ])('%s', (text, spec) => {
    expect(parseLatencySpec(text)).toEqual(spec);
  });

  it.each(['fixed:-1', 'fixed:abc', 'uniform:500-100', 'uniform:5', 'lognormal:median=1,sigma=9', 'lognormal:median=1,sigma=1,mean=3', 'triangle:1'])(
    'rejects %s with a hint',
    (text) => {
      expect(typeof parseLatencySpec(text)).toBe('string');
    },
  );
});
