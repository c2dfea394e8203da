import { baselineEnv, eventLoopFigures, parseOptions, probeFigures, sliceProfile, table, variantEnv, type VariantResult } from './palette-liveness.bench';
import { summarizeProfile, type CpuProfile } from '../load/cpu-profile';

/** The pure parts of `npm run bench -- palette-liveness`: flags, variants, figures, profile window. */
describe('palette-liveness bench', () => {
  it('parses its flags, leaves other benches’ flags alone and refuses bad values', () => {
    expect(parseOptions([], 2)).toMatchObject({ variants: ['baseline', 'defaults'], durationS: 25, warmupS: 5, concurrency: 16, probeMs: 20, format: 'png', side: 2048, cpuProf: false });
    expect(
      parseOptions(['palette-liveness', '--variants=baseline, nice-all+workers-1,defaults+shed', '--duration-s=30', '--format=jpeg', '--cpu-prof', '--service-dir=x'], 2),
    ).toMatchObject({ variants: ['baseline', 'nice-all+workers-1', 'defaults+shed'], durationS: 30, format: 'jpeg', cpuProf: true });
    expect(() => parseOptions(['--duration-s=0'], 2)).toThrow(/--duration-s must be an integer 1\.\.600/);
    expect(() => parseOptions(['--format=gif'], 2)).toThrow(/--format must be png or jpeg/);
    expect(() => parseOptions(['--variants=baseline,turbo'], 2)).toThrow(/unknown modifier "turbo"/);
    expect(() => parseOptions(['--variants='], 2)).toThrow(/at least one variant/);
  });

  it('builds each variant over the pinned pre-#15 settings, or over nothing for "defaults"', () => {
    expect(baselineEnv(2)).toEqual({ PALETTE_WORKERS: '2', PALETTE_WORKER_NICE: '0', PALETTE_NICE_THREADS: 'workers', PALETTE_LIBVIPS_THREADS: '1' });
    expect(variantEnv('baseline', 2)).toEqual(baselineEnv(2));
    expect(variantEnv('nice', 2)).toMatchObject({ PALETTE_WORKER_NICE: '10', PALETTE_NICE_THREADS: 'workers' });
    expect(variantEnv('nice-all=5+workers-1', 4)).toEqual({ PALETTE_WORKERS: '3', PALETTE_WORKER_NICE: '5', PALETTE_NICE_THREADS: 'all', PALETTE_LIBVIPS_THREADS: '1' });
    expect(variantEnv('workers-1', 1)).toMatchObject({ PALETTE_WORKERS: '1' });
    expect(variantEnv('vips=0', 2)).toMatchObject({ PALETTE_LIBVIPS_THREADS: '0' });
    expect(variantEnv('defaults', 2)).toEqual({});
    expect(variantEnv('defaults+shed', 2)).toEqual({ OVERLOAD_SHEDDING: 'true' });
    expect(() => variantEnv('nice=20', 2)).toThrow(/nice= needs an integer 0\.\.19/);
    expect(() => variantEnv('workers=x', 2)).toThrow(/workers= needs an integer/);
  });

  it('takes the 10 ms monitor resolution off the service’s per-second event-loop delay and skips missed scrapes', () => {
    const ticks = [
      { eventLoopDelayP99Ms: 30, eventLoopDelayMaxMs: 50, eventLoopUtilization: 0.5 },
      { eventLoopDelayP99Ms: null, eventLoopDelayMaxMs: null, eventLoopUtilization: null },
      { eventLoopDelayP99Ms: 12, eventLoopDelayMaxMs: 90, eventLoopUtilization: 0.7 },
      { eventLoopDelayP99Ms: 20, eventLoopDelayMaxMs: 25, eventLoopUtilization: 0.9 },
    ];
    expect(eventLoopFigures(ticks)).toEqual({ p99MedianMs: 10, p99WorstMs: 20, maxMs: 80, utilizationMean: 0.7 });
    expect(eventLoopFigures([])).toEqual({ p99MedianMs: null, p99WorstMs: null, maxMs: null, utilizationMean: null });
  });

  it('summarizes probe latencies by nearest rank', () => {
    const latenciesMs = Array.from({ length: 100 }, (_, i) => i + 1);
    expect(probeFigures({ latenciesMs, failures: 2, unansweredAtEnd: 1, ownEventLoopDelayP99Ms: 3.14159, ownEventLoopDelayMaxMs: 9 })).toEqual({
      count: 100,
      failures: 2,
      unansweredAtEnd: 1,
      p50: 50,
      p99: 99,
      max: 100,
      ownEventLoopDelayP99Ms: 3.1,
    });
  });

  it('keeps only the samples of a CPU profile inside the measured window', () => {
    // Node 1 is the root; 2 runs until t = 1000 µs, 3 after: samples every 100 µs from t = 100.
    const profile: CpuProfile = {
      nodes: [
        { id: 1, callFrame: { functionName: '(root)', url: '', lineNumber: -1 }, children: [2, 3] },
        { id: 2, callFrame: { functionName: 'startup', url: 'file:///app/dist/main.js', lineNumber: 0 } },
        { id: 3, callFrame: { functionName: 'upload', url: 'file:///app/dist/uploads/x.js', lineNumber: 0 } },
      ],
      samples: [2, 2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3],
      timeDeltas: Array.from({ length: 20 }, () => 100),
      startTime: 0,
      endTime: 2100,
    };
    const window = summarizeProfile(sliceProfile(profile, 1000, 2000), 'x');
    expect(window.functions.map((f) => f.name.split(' ')[0])).toEqual(['upload']);
    expect(summarizeProfile(profile, 'x').functions.map((f) => f.name.split(' ')[0]).sort()).toEqual(['startup', 'upload']);
  });

  it('prints one table row per variant with the probe p99 in bold and non-200 answers counted', () => {
    const result: VariantResult = {
      variant: 'defaults+shed',
      env: { OVERLOAD_SHEDDING: 'true' },
      threadNice: {},
      probe: { count: 1000, failures: 0, unansweredAtEnd: 0, p50: 2.5, p99: 30.1, max: 60, ownEventLoopDelayP99Ms: 4 },
      serviceEventLoop: { p99MedianMs: 10, p99WorstMs: 20, maxMs: 40, utilizationMean: 0.6 },
      uploads: { completedPerSecond: 12.5, p50Ms: 900, p99Ms: 3000, outcomes: { '200': 250, '503 OVERLOADED': 7 } },
      cpu: { servicePct: 170, byThread: { main: 40, workers: 4, libvips: 60, libuv: 18, v8: 30, other: 0 }, machinePct: 195, loadGeneratorPct: 20, othersPct: 5 },
    };
    const lines = table([result]).split('\n');
    expect(lines).toHaveLength(3);
    expect(lines[2]).toBe('| defaults+shed | 2.5 / **30.1** / 60 | 10 / 20 / 40 | 12.5 | 900 / 3000 | 170 (40 / 4 / 60 / 18) · 20 · 5 | 503 OVERLOADED: 7 |');
  });
});
