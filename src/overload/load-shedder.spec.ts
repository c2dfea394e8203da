import { loadConfig } from '../config/app-config';
import type { PaletteService } from '../palette/palette.service';
import { AppMetrics } from '../telemetry/app-metrics';
import { LoadShedder } from './load-shedder';

const tick = () => new Promise((r) => setTimeout(r, 30));

describe('LoadShedder', () => {
  const palette = (queued: number, waiting = 0) => ({ stats: () => ({ queued, waiting }) }) as unknown as PaletteService;
  const make = (p = palette(0), env: Record<string, string> = {}) =>
    new LoadShedder(loadConfig({ OVERLOAD_SHEDDING: 'true', OVERLOAD_SAMPLE_MS: '0', PALETTE_MAX_QUEUE: '10', ...env }), p, new AppMetrics());

  it('measures a blocked event loop as delay and utilization', async () => {
    const shedder = make();
    (shedder as unknown as { delay: { enable(): void } }).delay.enable();
    shedder.sample();
    await tick();
    // Block the loop for 300 ms: the delay histogram's timer fires that late (only ever later on a busy machine).
    const end = Date.now() + 300;
    while (Date.now() < end);
    await tick();
    const sample = shedder.sample();
    expect(sample.eventLoopDelayP99Ms).toBeGreaterThanOrEqual(250);
    expect(sample.eventLoopUtilization).toBeGreaterThan(0.5);
    shedder.onModuleDestroy();
  });

  it('measures its own CPU use as a share of its cores, 0..1', async () => {
    const shedder = make();
    shedder.sample();
    await tick();
    const end = Date.now() + 200;
    while (Date.now() < end);
    const share = shedder.sample().processCpuShare;
    // The loop spun for most of the period on one thread; on a busy machine it got less of a core.
    expect(share).toBeGreaterThan(0);
    expect(share).toBeLessThanOrEqual(1);
  });

  it('reads the palette queue fill, waiting callers included, capped at 1', () => {
    expect(make(palette(3, 2)).sample().paletteQueueFill).toBeCloseTo(0.5);
    expect(make(palette(10, 5)).sample().paletteQueueFill).toBe(1);
  });

  it('refuses with 503 OVERLOADED only while shedding, and never when turned off', () => {
    const shedder = make();
    const hot = { eventLoopDelayP99Ms: 0, eventLoopUtilization: 0, paletteQueueFill: 1, processCpuShare: 0 };
    expect(() => shedder.assertAccepting('generation')).not.toThrow();
    shedder.evaluate(hot);
    shedder.evaluate(hot);
    expect(() => shedder.assertAccepting('upload')).toThrow(expect.objectContaining({ status: 503, code: 'OVERLOADED' }));
    const off = make(palette(0), { OVERLOAD_SHEDDING: 'false' });
    off.evaluate(hot);
    off.evaluate(hot);
    expect(() => off.assertAccepting('generation')).not.toThrow();
  });
});
