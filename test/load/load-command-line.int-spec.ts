/**
 * `npm run load`'s command line (issue 14, item 11): `--help` prints the usage instead of a stack
 * trace, and a command line it cannot run says why, with the usage, and exits 2.
 */
import { parseCommandLine, parseOptions, USAGE, UsageError, type LoadOptions } from './options';

function run(argv: string[], env: Record<string, string | undefined> = {}) {
  let out = '';
  let err = '';
  const result = parseCommandLine(argv, env, { out: (t) => (out += t), err: (t) => (err += t) });
  return { result, out, err };
}

describe('npm run load -- --help', () => {
  it.each([['--help'], ['-h'], ['--scenarios=steady', '--help']])('%s prints the usage on stdout and exits 0, running nothing', (...argv) => {
    expect(run(argv)).toEqual({ result: 0, out: USAGE, err: '' });
  });

  it('the usage names every flag the parser accepts', () => {
    const flags = [...USAGE.matchAll(/^ {2}(?:-h, )?--([a-z0-9-]+)/gm)].map((m) => m[1]);
    expect(flags).toEqual(
      expect.arrayContaining(['scenarios', 'profile', 'rates', 'env', 'node-arg', 'target', 'cpu-profile', 'memory-detail', 'report', 'report-from', 'out', 'help']),
    );
    const values: Record<string, string> = {
      scenarios: 'steady', profile: 'full', latency: 'fixed:1', 'soak-seconds': '60', env: 'A=1', 'node-arg': '--x',
      target: 'http://127.0.0.1:3000', 'metrics-url': 'http://127.0.0.1:9464/metrics', 'report-from': 'a.json', out: 'x.json', 'queue-lock-ms': '5000',
      'distributed-runs': 'embedded,distributed', 'distributed-restart': 'true', 'distributed-latency': 'fixed:1',
    };
    for (const flag of flags.filter((f) => f !== 'help')) {
      // Every documented flag parses (booleans bare, the others with a value the parser accepts).
      const boolean = ['cpu-profile', 'memory-detail', 'report'].includes(flag);
      const value = values[flag] ?? '1';
      expect(() => parseOptions([boolean ? `--${flag}` : `--${flag}=${value}`], {})).not.toThrow();
    }
  });

  it.each([
    [['--nope=1'], 'Unknown flag --nope'],
    [['steady'], 'Unexpected argument steady'],
    [['--profile=huge'], '--profile must be short or full, got huge'],
    [['--report=yes'], "Option '--report' does not take an argument"],
    [['--target=not a url'], '--target / LOAD_TARGET: not a URL'],
  ])('%j: says why on stderr with the usage, exits 2, no stack trace', (argv, reason) => {
    const { result, out, err } = run(argv);
    expect(result).toBe(2);
    expect(out).toBe('');
    expect(err).toContain(reason);
    expect(err).toContain(USAGE);
    expect(err).not.toMatch(/\n\s+at /);
  });

  it('a valid command line runs; flags still win over LOAD_* variables', () => {
    const { result } = run(['--scenarios=steady', '--node-arg=--max-semi-space-size=64', '--env=A=1', '--env=B=2', '--cpu-profile'], { LOAD_SCENARIOS: 'soak', LOAD_PROFILE: 'full' });
    expect(result).toMatchObject({ scenarios: ['steady'], profile: 'full', serviceNodeArgs: ['--max-semi-space-size=64'], serviceEnv: { A: '1', B: '2' }, cpuProfile: true, help: false });
    expect(() => parseOptions(['--nope'])).toThrow(UsageError);
    expect((result as LoadOptions).argv).toHaveLength(5);
  });
});
