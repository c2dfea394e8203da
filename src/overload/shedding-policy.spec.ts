import { SaturationSample, SheddingPolicy, SheddingThresholds, usableCores } from './shedding-policy';

const thresholds: SheddingThresholds = {
  enter: { eventLoopDelayP99Ms: 100, eventLoopUtilization: 0.9, paletteQueueFill: 0.9, processCpuShare: 0.6 },
  exit: { eventLoopDelayP99Ms: 40, eventLoopUtilization: 0.7, paletteQueueFill: 0.5, processCpuShare: 0.4 },
  enterSamples: 2,
  exitSamples: 3,
};
const calm: SaturationSample = { eventLoopDelayP99Ms: 5, eventLoopUtilization: 0.2, paletteQueueFill: 0, processCpuShare: 0.1 };
/** The process busy with its own work (CPU share over its line), loop still fine. */
const busy: SaturationSample = { ...calm, processCpuShare: 0.8 };
const between: SaturationSample = { eventLoopDelayP99Ms: 70, eventLoopUtilization: 0.8, paletteQueueFill: 0.7, processCpuShare: 0.5 };

describe('SheddingPolicy', () => {
  it('starts only after enterSamples saturated periods in a row, naming the signals', () => {
    const policy = new SheddingPolicy(thresholds);
    const slow = { ...busy, eventLoopDelayP99Ms: 150 };
    expect(policy.update(slow)).toEqual({ shedding: false, changed: false, over: ['eventLoopDelayP99Ms', 'processCpuShare'], notOwnLoad: [] });
    // One calm period in between resets the run: a single slow GC does not start shedding.
    expect(policy.update(calm).shedding).toBe(false);
    expect(policy.update(slow).shedding).toBe(false);
    expect(policy.update({ ...calm, paletteQueueFill: 1 })).toEqual({ shedding: true, changed: true, over: ['paletteQueueFill'], notOwnLoad: [] });
  });

  it('each loop signal starts it while the process uses its CPU; the palette queue alone starts it', () => {
    for (const signal of ['eventLoopDelayP99Ms', 'eventLoopUtilization'] as const) {
      const policy = new SheddingPolicy(thresholds);
      const hot = { ...busy, [signal]: thresholds.enter[signal] };
      policy.update(hot);
      expect(policy.update(hot)).toMatchObject({ shedding: true, changed: true, over: [signal, 'processCpuShare'] });
    }
    const policy = new SheddingPolicy(thresholds);
    const backlog = { ...calm, paletteQueueFill: thresholds.enter.paletteQueueFill };
    policy.update(backlog);
    expect(policy.update(backlog)).toMatchObject({ shedding: true, over: ['paletteQueueFill'] });
  });

  it('a busy CPU alone, with a fast loop and no backlog, is not saturation', () => {
    const policy = new SheddingPolicy(thresholds);
    for (let i = 0; i < 10; i++) expect(policy.update({ ...busy, processCpuShare: 1 })).toEqual({ shedding: false, changed: false, over: [], notOwnLoad: [] });
  });

  it('a loop slowed while the process barely uses the CPU (other processes hold the cores) does not shed', () => {
    const policy = new SheddingPolicy(thresholds);
    const neighbours = { eventLoopDelayP99Ms: 400, eventLoopUtilization: 1, paletteQueueFill: 0, processCpuShare: 0.15 };
    for (let i = 0; i < 10; i++) {
      expect(policy.update(neighbours)).toEqual({ shedding: false, changed: false, over: [], notOwnLoad: ['eventLoopDelayP99Ms', 'eventLoopUtilization'] });
    }
    // Just below the CPU line still does not count; at the line it does.
    const justBelow = { ...neighbours, processCpuShare: thresholds.enter.processCpuShare - 0.01 };
    policy.update(justBelow);
    expect(policy.update(justBelow).shedding).toBe(false);
    const atLine = { ...neighbours, processCpuShare: thresholds.enter.processCpuShare };
    policy.update(atLine);
    expect(policy.update(atLine)).toMatchObject({ shedding: true, changed: true });
  });

  it('stops only after exitSamples calm periods in a row; values between the lines keep it on (hysteresis)', () => {
    const policy = new SheddingPolicy(thresholds);
    const hot = { ...busy, eventLoopUtilization: 0.95 };
    policy.update(hot);
    policy.update(hot);
    expect(policy.isShedding).toBe(true);
    // Below the enter line but above the exit line: still shedding, however long.
    for (let i = 0; i < 10; i++) expect(policy.update(between)).toMatchObject({ shedding: true, changed: false, over: [] });
    expect(policy.update(calm).shedding).toBe(true);
    expect(policy.update(calm).shedding).toBe(true);
    expect(policy.update(between).shedding).toBe(true); // the calm run is broken
    policy.update(calm);
    policy.update(calm);
    expect(policy.update(calm)).toEqual({ shedding: false, changed: true, over: [], notOwnLoad: [] });
    expect(policy.update(between)).toEqual({ shedding: false, changed: false, over: [], notOwnLoad: [] });
  });

  it('counts as calm a slow loop once the process no longer uses its CPU, and a busy process whose loop is fast again', () => {
    const start = (policy: SheddingPolicy) => {
      const hot = { ...busy, eventLoopDelayP99Ms: 200 };
      policy.update(hot);
      policy.update(hot);
      expect(policy.isShedding).toBe(true);
    };
    // The instance's own work has drained, the loop is slow for someone else's reasons.
    const drainedButSlow = { ...between, paletteQueueFill: 0, processCpuShare: thresholds.exit.processCpuShare };
    const a = new SheddingPolicy(thresholds);
    start(a);
    for (let i = 0; i < 2; i++) expect(a.update(drainedButSlow).shedding).toBe(true);
    expect(a.update(drainedButSlow)).toMatchObject({ shedding: false, changed: true });
    // Still busy, but the loop is back under its calm lines.
    const busyButFast = { ...busy, processCpuShare: 0.9 };
    const b = new SheddingPolicy(thresholds);
    start(b);
    for (let i = 0; i < 2; i++) b.update(busyButFast);
    expect(b.update(busyButFast)).toMatchObject({ shedding: false, changed: true });
    // A palette backlog above its calm line keeps it on whatever the rest says.
    const c = new SheddingPolicy(thresholds);
    start(c);
    for (let i = 0; i < 10; i++) expect(c.update({ ...calm, paletteQueueFill: 0.6 }).shedding).toBe(true);
  });

  it('refuses exit thresholds that are not below the enter ones, and empty runs', () => {
    expect(() => new SheddingPolicy({ ...thresholds, exit: { ...thresholds.exit, paletteQueueFill: 0.9 } })).toThrow(RangeError);
    expect(() => new SheddingPolicy({ ...thresholds, exit: { ...thresholds.exit, processCpuShare: 0.6 } })).toThrow(/processCpuShare/);
    expect(() => new SheddingPolicy({ ...thresholds, enterSamples: 0 })).toThrow(RangeError);
  });
});

describe('usableCores', () => {
  it('takes the machine\'s cores unless a cgroup v2 quota allows fewer', () => {
    expect(usableCores(8, undefined)).toBe(8);
    expect(usableCores(8, 'max 100000\n')).toBe(8);
    expect(usableCores(8, '150000 100000\n')).toBe(1.5);
    expect(usableCores(2, '400000 100000')).toBe(2);
    expect(usableCores(4, 'garbage')).toBe(4);
  });
});
