import { SaturationSample, SheddingPolicy, SheddingThresholds } from './shedding-policy';

const thresholds: SheddingThresholds = {
  enter: { eventLoopDelayP99Ms: 100, eventLoopUtilization: 0.9, paletteQueueFill: 0.9 },
  exit: { eventLoopDelayP99Ms: 40, eventLoopUtilization: 0.7, paletteQueueFill: 0.5 },
  enterSamples: 2,
  exitSamples: 3,
};
const calm: SaturationSample = { eventLoopDelayP99Ms: 5, eventLoopUtilization: 0.2, paletteQueueFill: 0 };
const between: SaturationSample = { eventLoopDelayP99Ms: 70, eventLoopUtilization: 0.8, paletteQueueFill: 0.7 };

describe('SheddingPolicy', () => {
  it('starts only after enterSamples saturated periods in a row, naming the signal', () => {
    const policy = new SheddingPolicy(thresholds);
    const slow = { ...calm, eventLoopDelayP99Ms: 150 };
    expect(policy.update(slow)).toEqual({ shedding: false, changed: false, over: ['eventLoopDelayP99Ms'] });
    // One calm period in between resets the run: a single slow GC does not start shedding.
    expect(policy.update(calm).shedding).toBe(false);
    expect(policy.update(slow).shedding).toBe(false);
    expect(policy.update({ ...calm, paletteQueueFill: 1 })).toEqual({ shedding: true, changed: true, over: ['paletteQueueFill'] });
  });

  it('each signal alone can start it', () => {
    for (const signal of ['eventLoopDelayP99Ms', 'eventLoopUtilization', 'paletteQueueFill'] as const) {
      const policy = new SheddingPolicy(thresholds);
      const hot = { ...calm, [signal]: thresholds.enter[signal] };
      policy.update(hot);
      expect(policy.update(hot)).toMatchObject({ shedding: true, changed: true, over: [signal] });
    }
  });

  it('stops only after exitSamples calm periods in a row; values between the lines keep it on (hysteresis)', () => {
    const policy = new SheddingPolicy(thresholds);
    const hot = { ...calm, eventLoopUtilization: 0.95 };
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
    expect(policy.update(calm)).toEqual({ shedding: false, changed: true, over: [] });
    expect(policy.update(between)).toEqual({ shedding: false, changed: false, over: [] });
  });

  it('refuses exit thresholds that are not below the enter ones', () => {
    expect(() => new SheddingPolicy({ ...thresholds, exit: { ...thresholds.exit, paletteQueueFill: 0.9 } })).toThrow(RangeError);
  });
});
