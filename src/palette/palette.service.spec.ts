import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { referenceImage, pixelBombPng } from '../../test/support/images';
import { loadConfig } from '../config/app-config';
import type { AppMetrics } from '../telemetry/app-metrics';
import { PaletteError } from './palette.errors';
import { PaletteService, resolveWorkerFile } from './palette.service';

/**
 * A stand-in worker driven by the image bytes, so pool behaviour (crash, stall, back-pressure,
 * shutdown) can be provoked on demand without test hooks in the real worker.
 */
const FAKE_WORKER = `
export default async function fakePaletteTask(task) {
  const command = new TextDecoder().decode(new Uint8Array(task.image));
  if (command === 'crash') process.exit(3);
  const sleep = /^sleep:(\\d+)$/.exec(command);
  if (sleep) await new Promise((resolve) => setTimeout(resolve, Number(sleep[1])));
  return { ok: true, palette: { colors: [], width: command.length, height: task.size, format: 'fake', swatches: {} } };
}
`;

function fakeMetrics() {
  const gauges = new Map<string, () => number>();
  const tasks: { outcome: string; seconds: number }[] = [];
  const metrics = {
    gauge: (name: string, _description: string, read: () => number) => gauges.set(name, read),
    recordPaletteTask: (outcome: string, seconds: number) => tasks.push({ outcome, seconds }),
  } as unknown as AppMetrics;
  return { metrics, gauges, tasks };
}

const bytes = (command: string) => Buffer.from(command);
const settle = <T>(p: Promise<T>) => p.then((value) => ({ value, error: undefined }), (error: unknown) => ({ value: undefined, error }));

describe('PaletteService with the real worker', () => {
  const { metrics, gauges, tasks } = fakeMetrics();
  let service: PaletteService;

  beforeAll(() => {
    service = new PaletteService(loadConfig({ PALETTE_WORKERS: '2', PALETTE_MAX_QUEUE: '8' }), metrics);
  });
  afterAll(() => service.onModuleDestroy());

  it('runs the TypeScript worker source under Jest and extracts a palette', async () => {
    expect(resolveWorkerFile()).toMatch(/palette\.worker\.ts$/);
    const result = await service.extract(await referenceImage('png'), 3);
    expect(result.colors.map((c) => c.hex)).toHaveLength(3);
    expect(result.colors[0].proportion).toBeCloseTo(0.6, 1);
    expect(result).toMatchObject({ width: 512, height: 512, format: 'png' });
    expect(result.swatches.vibrant?.hex).toMatch(/^#[0-9a-f]{6}$/);
    expect(tasks.at(-1)?.outcome).toBe('ok');
  });

  it('leaves the caller’s buffer intact (the worker gets a transferred copy)', async () => {
    const image = await referenceImage('png');
    const before = Buffer.from(image);
    await service.extract(image, 2);
    expect(image.byteLength).toBe(before.byteLength);
    expect(image.equals(before)).toBe(true);
  });

  it('reports bad input with its code', async () => {
    await expect(service.extract(Buffer.from('definitely not an image'), 5)).rejects.toMatchObject({
      name: 'PaletteError',
      code: 'UNSUPPORTED_IMAGE',
    });
    await expect(service.extract(await pixelBombPng(12_000), 5)).rejects.toMatchObject({ code: 'IMAGE_TOO_LARGE' });
    expect(tasks.at(-1)?.outcome).toBe('error');
  });

  it('rejects sizes outside 1..12 before queueing anything', async () => {
    for (const size of [0, 13, 2.5, Number.NaN]) {
      await expect(service.extract(bytes('x'), size)).rejects.toThrow(RangeError);
    }
  });

  it('exposes pool gauges that read the live pool', () => {
    expect([...gauges.keys()].sort()).toEqual(['palette.pool.queue.size', 'palette.pool.utilization', 'palette.pool.waiting', 'palette.pool.workers']);
    expect(gauges.get('palette.pool.workers')!()).toBe(2);
    expect(gauges.get('palette.pool.queue.size')!()).toBe(0);
    expect(gauges.get('palette.pool.utilization')!()).toBe(0);
    expect(service.stats()).toMatchObject({ workers: 2, busy: 0, queued: 0, utilization: 0 });
    expect(service.stats().completed).toBeGreaterThanOrEqual(4);
  });
});

describe('PaletteService pool behaviour', () => {
  let dir: string;
  let workerFile: string;
  const services: PaletteService[] = [];

  const start = (workers: number, maxQueue: number) => {
    const service = new PaletteService(
      loadConfig({ PALETTE_WORKERS: String(workers), PALETTE_MAX_QUEUE: String(maxQueue) }),
      fakeMetrics().metrics,
      workerFile,
    );
    services.push(service);
    return service;
  };

  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'palette-worker-'));
    workerFile = join(dir, 'fake-palette.worker.mjs');
    writeFileSync(workerFile, FAKE_WORKER);
  });
  afterAll(async () => {
    await Promise.all(services.map((s) => s.onModuleDestroy()));
    rmSync(dir, { recursive: true, force: true });
  });

  it('fails only the task whose worker crashed, then serves the next one on a replacement thread', async () => {
    const service = start(1, 4);
    const crashed = await settle(service.extract(bytes('crash'), 5));
    expect(crashed.error).toBeInstanceOf(PaletteError);
    expect(crashed.error).toMatchObject({ code: 'PALETTE_ERROR' });
    expect((crashed.error as Error).message).toMatch(/exit/i);

    const next = await service.extract(bytes('fine'), 4);
    expect(next).toMatchObject({ width: 4, height: 4, format: 'fake' });
    expect(service.stats().workers).toBe(1);
  });

  it('a crash while other tasks wait fails that task alone; the queued ones still complete', async () => {
    const service = start(1, 4);
    const results = await Promise.all([
      settle(service.extract(bytes('sleep:50'), 1)),
      settle(service.extract(bytes('crash'), 2)),
      settle(service.extract(bytes('after'), 3)),
    ]);
    expect(results[0].error).toBeUndefined();
    expect(results[1].error).toMatchObject({ code: 'PALETTE_ERROR' });
    expect(results[2].value).toMatchObject({ width: 5, height: 3 });
  });

  it('refuses work with PALETTE_BUSY once the queue is full, and accepts again when it drains', async () => {
    const service = start(1, 2);
    const running = service.extract(bytes('sleep:300'), 1);
    const queued = [service.extract(bytes('sleep:10'), 2), service.extract(bytes('sleep:10'), 3)];
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(service.stats()).toMatchObject({ workers: 1, busy: 1, queued: 2, utilization: 1 });
    expect(service.isAccepting()).toBe(false);
    await expect(service.extract(bytes('one too many'), 5)).rejects.toMatchObject({ code: 'PALETTE_BUSY' });
    expect(service.retryAfterSeconds()).toBeGreaterThanOrEqual(1);

    await Promise.all([running, ...queued]);
    expect(service.isAccepting()).toBe(true);
    await expect(service.extract(bytes('room again'), 5)).resolves.toMatchObject({ width: 10 });
  });

  it('with waitForRoom, waits in arrival order for a full queue instead of failing, and reports the wait', async () => {
    const service = start(1, 1);
    const finished: string[] = [];
    const track = (command: string, opts = {}) =>
      service.extract(bytes(command), 1, opts).then((r) => {
        finished.push(command);
        return r;
      });
    const filled = [track('sleep:100'), track('sleep:20')];
    await new Promise((resolve) => setTimeout(resolve, 20));
    const waiting = [track('w1', { waitForRoom: true }), track('w2', { waitForRoom: true }), track('w3', { waitForRoom: true })];
    await new Promise((resolve) => setTimeout(resolve, 10));
    expect(service.stats()).toMatchObject({ queued: 1, waiting: 3 });
    // A caller without waitForRoom is still refused at once.
    await expect(service.extract(bytes('impatient'), 1)).rejects.toMatchObject({ code: 'PALETTE_BUSY' });

    await Promise.all([...filled, ...waiting]);
    expect(finished).toEqual(['sleep:100', 'sleep:20', 'w1', 'w2', 'w3']);
    expect(service.stats()).toMatchObject({ queued: 0, waiting: 0 });
  });

  it('a caller waiting for room leaves the line when its signal aborts; the others keep their turn', async () => {
    const service = start(1, 1);
    const filled = [service.extract(bytes('sleep:150'), 1), service.extract(bytes('sleep:10'), 1)];
    await new Promise((resolve) => setTimeout(resolve, 20));
    const controller = new AbortController();
    const canceled = settle(service.extract(bytes('canceled'), 1, { waitForRoom: true, signal: controller.signal }));
    const kept = service.extract(bytes('kept'), 1, { waitForRoom: true });
    await new Promise((resolve) => setTimeout(resolve, 10));
    controller.abort('CANCELED');
    expect((await canceled).error).toMatchObject({ name: 'AbortError' });
    expect(service.stats().waiting).toBe(1);
    await expect(kept).resolves.toMatchObject({ width: 4 });
    await Promise.all(filled);
    // An already-aborted signal never joins the line.
    const aborted = new AbortController();
    aborted.abort();
    await Promise.all([service.extract(bytes('sleep:100'), 1), service.extract(bytes('sleep:1'), 1), settle(service.extract(bytes('x'), 1, { waitForRoom: true, signal: aborted.signal })).then((r) => expect(r.error).toMatchObject({ name: 'AbortError' }))]);
  });

  it('shutdown turns callers waiting for room away with PALETTE_BUSY, while accepted tasks finish', async () => {
    const service = start(1, 1);
    const accepted = [service.extract(bytes('sleep:100'), 1), service.extract(bytes('sleep:10'), 1)];
    await new Promise((resolve) => setTimeout(resolve, 20));
    const waiting = settle(service.extract(bytes('waiting'), 1, { waitForRoom: true }));
    await new Promise((resolve) => setTimeout(resolve, 10));
    const closing = service.onModuleDestroy();
    expect((await waiting).error).toMatchObject({ code: 'PALETTE_BUSY', message: expect.stringMatching(/shutting down/) });
    await expect(Promise.all(accepted)).resolves.toHaveLength(2);
    await closing;
  });

  it('with transfer, moves a buffer that owns its memory to the worker; a slice of a shared buffer is copied', async () => {
    const service = start(1, 4);
    // Decoded like a Gemini image; Node gives a large decode its own exact-size ArrayBuffer.
    const owned = Buffer.from(Buffer.alloc(700_001, 'a').toString('base64'), 'base64');
    expect(owned.byteOffset === 0 && owned.buffer.byteLength === owned.byteLength).toBe(true);
    await expect(service.extract(owned, 2, { transfer: true })).resolves.toMatchObject({ width: 700_001 });
    expect(owned.byteLength).toBe(0); // detached: the bytes moved instead of being copied

    const shared = Buffer.from('pooled'); // a slice of Node's shared allocation pool
    expect(shared.buffer.byteLength).toBeGreaterThan(shared.byteLength);
    await expect(service.extract(shared, 2, { transfer: true })).resolves.toMatchObject({ width: 6 });
    expect(shared.toString()).toBe('pooled');

    const kept = Buffer.from(Buffer.alloc(8192, 'b').toString('base64'), 'base64');
    await service.extract(kept, 2);
    expect(kept.byteLength).toBe(8192); // without transfer the caller's bytes stay
  });

  it('aborts a queued task through its signal without disturbing the running one', async () => {
    const service = start(1, 4);
    const running = service.extract(bytes('sleep:200'), 1);
    const controller = new AbortController();
    const queued = settle(service.extract(bytes('never'), 2, { signal: controller.signal }));
    controller.abort();
    expect((await queued).error).toMatchObject({ name: 'AbortError' });
    await expect(running).resolves.toMatchObject({ width: 9 });
  });

  it('on shutdown finishes accepted tasks, then refuses new ones', async () => {
    const service = start(1, 4);
    const accepted = [service.extract(bytes('sleep:150'), 1), service.extract(bytes('sleep:10'), 2)];
    await new Promise((resolve) => setTimeout(resolve, 20));
    const closing = service.onModuleDestroy();
    expect(service.isAccepting()).toBe(false);
    await expect(service.extract(bytes('late'), 5)).rejects.toMatchObject({ code: 'PALETTE_BUSY' });
    await expect(Promise.all(accepted)).resolves.toHaveLength(2);
    await closing;
    expect(service.stats().workers).toBe(0);
  });
});
