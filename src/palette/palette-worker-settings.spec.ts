import { readdirSync, readFileSync } from 'node:fs';
import { getPriority } from 'node:os';
import { referenceImage } from '../../test/support/images';
import { loadConfig } from '../config/app-config';
import { noopPaletteMetrics } from '../../test/support/metrics';
import { PaletteService } from './palette.service';

/** Nice values of this process's threads whose name matches `name` (Linux /proc). */
function niceOfThreads(name: RegExp): number[] {
  const out: number[] = [];
  for (const tid of readdirSync('/proc/self/task')) {
    try {
      const stat = readFileSync(`/proc/self/task/${tid}/stat`, 'utf8');
      if (!name.test(stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')')))) continue;
      out.push(Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[16]));
    } catch {
      // the thread ended meanwhile
    }
  }
  return out;
}

const onLinux = process.platform === 'linux' ? describe : describe.skip;

/**
 * The pool runs with the configured PALETTE_WORKER_NICE, PALETTE_NICE_THREADS and
 * PALETTE_LIBVIPS_THREADS, as the threads themselves read them back (no timing: what the kernel and
 * libvips report). Nice values only go up without privileges, so the expectations are relative to
 * this process's own, and every service here uses a value at or above the previous one.
 */
onLinux('palette worker thread settings', () => {
  const base = getPriority();
  const services: PaletteService[] = [];
  const start = (env: Record<string, string>) => {
    const service = new PaletteService(loadConfig({ PALETTE_WORKERS: '1', ...env }), noopPaletteMetrics);
    services.push(service);
    return service;
  };
  afterAll(() => Promise.all(services.map((s) => s.onModuleDestroy())));

  it('without a nice, the worker thread keeps the event loop’s priority; libvips gets the configured threads', async () => {
    const service = start({ PALETTE_WORKER_NICE: '0', PALETTE_LIBVIPS_THREADS: '2' });
    await expect(service.workerSettings()).resolves.toEqual({ nice: base, libvipsThreads: 2 });
  });

  it('PALETTE_WORKER_NICE lowers the worker thread (Piscina niceIncrement), not the event loop', async () => {
    const service = start({ PALETTE_WORKER_NICE: '3', PALETTE_NICE_THREADS: 'workers' });
    await expect(service.workerSettings()).resolves.toEqual({ nice: Math.min(19, base + 3), libvipsThreads: 1 });
    expect(getPriority()).toBe(base);
  });

  it('PALETTE_NICE_THREADS=all also lowers the libuv pool and libvips threads that decode, once a palette ran', async () => {
    const service = start({ PALETTE_WORKER_NICE: '4', PALETTE_NICE_THREADS: 'all' });
    await service.extract(await referenceImage('png'), 3);
    const expected = Math.min(19, base + 4);
    expect(niceOfThreads(/^libuv-worker/).length).toBeGreaterThan(0);
    expect(niceOfThreads(/^libuv-worker/).every((n) => n >= expected)).toBe(true);
    expect(niceOfThreads(/^libvips/).length).toBeGreaterThan(0);
    expect(niceOfThreads(/^libvips/).every((n) => n >= expected)).toBe(true);
    await expect(service.workerSettings()).resolves.toMatchObject({ nice: expected });
    // The event loop itself is never lowered.
    expect(getPriority()).toBe(base);
  });
});
