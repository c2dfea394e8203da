/**
 * Bounds on one palette task through the real pool (issue 6 of the security review): the time limit
 * (PALETTE_TASK_TIMEOUT_MS), aborting a running or queued task through the caller's signal, the
 * limits every task carries to its worker, and images given as files. A stand-in worker that hangs
 * or logs on demand drives them: no test waits for a clock to beat a piece of work.
 */
import { getEventListeners } from 'node:events';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { referenceImage } from '../../test/support/images';
import { noopPaletteMetrics } from '../../test/support/metrics';
import { loadConfig } from '../config/app-config';
import { PaletteError } from './palette.errors';
import { PaletteService } from './palette.service';

/**
 * Commands come as the image: its bytes, or the text of the file it names. Every task appends
 * `start <command>` to the log file before it does anything, `end <command>` when it finishes.
 * `hang` never finishes; `limits` answers the limits it was sent; `refuse` answers UNSUPPORTED_IMAGE.
 */
const fakeWorker = (log: string) => `
import { appendFileSync, readFileSync } from 'node:fs';
export default async function fakePaletteTask(task) {
  const command = typeof task.image === 'string' ? readFileSync(task.image, 'utf8') : new TextDecoder().decode(new Uint8Array(task.image));
  appendFileSync(${JSON.stringify(log)}, 'start ' + command + '\\n');
  if (command === 'hang') await new Promise(() => {});
  if (command === 'refuse') return { ok: false, code: 'UNSUPPORTED_IMAGE', message: 'clean words', detail: 'libvips internals' };
  appendFileSync(${JSON.stringify(log)}, 'end ' + command + '\\n');
  const palette = { colors: [], width: 1, height: task.size, format: 'fake', swatches: {} };
  if (command === 'limits') palette.limits = task.limits;
  return { ok: true, palette };
}
`;

const bytes = (command: string) => Buffer.from(command);
const settle = <T>(p: Promise<T>) =>
  p.then(
    (value) => ({ value, error: undefined }),
    (error: unknown) => ({ value: undefined, error }),
  );

/** Polls `check` until it returns something other than undefined (the pool's events are asynchronous). */
async function eventually<T>(check: () => T | undefined, what: string): Promise<T> {
  for (let i = 0; i < 500; i++) {
    const value = check();
    if (value !== undefined) return value;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  throw new Error(`timed out waiting for ${what}`);
}

describe('PaletteService task limits', () => {
  let dir: string;
  let log: string;
  let workerFile: string;
  const services: PaletteService[] = [];

  const start = (env: Record<string, string> = {}) => {
    const service = new PaletteService(loadConfig({ PALETTE_WORKERS: '1', PALETTE_MAX_QUEUE: '4', ...env }), noopPaletteMetrics, workerFile);
    services.push(service);
    return service;
  };
  const logged = () => readFileSync(log, 'utf8').split('\n').filter(Boolean);

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'palette-limits-'));
    log = join(dir, 'tasks.log');
    writeFileSync(log, '');
    workerFile = join(dir, 'fake-palette.worker.mjs');
    writeFileSync(workerFile, fakeWorker(log));
  });
  afterEach(async () => {
    await Promise.all(services.splice(0).map((s) => s.onModuleDestroy()));
    rmSync(dir, { recursive: true, force: true });
  });

  it('a task that outlives PALETTE_TASK_TIMEOUT_MS fails PALETTE_TIMEOUT, and its thread is ended and replaced', async () => {
    const service = start({ PALETTE_TASK_TIMEOUT_MS: '1000' });
    // The thread must be up first: a busy machine may need most of the limit just to start it, and
    // then the hanging task would time out before it ever ran. A task that answers proves it is up.
    await eventually(async () => ((await settle(service.extract(bytes('ok'), 1))).error === undefined ? true : undefined), 'the thread to answer');
    const hung = await settle(service.extract(bytes('hang'), 1));
    expect(hung.error).toBeInstanceOf(PaletteError);
    expect(hung.error).toMatchObject({ code: 'PALETTE_TIMEOUT', message: 'The palette took longer than 1000 ms; retry later' });
    // The task would hang for ever: the only thread is free again because it was ended.
    await eventually(() => (service.stats().busy === 0 && service.stats().workers === 1 ? true : undefined), 'a fresh thread');
    expect(logged().filter((line) => !line.endsWith(' ok'))).toEqual(['start hang']);
  });

  it('aborting the caller’s signal ends a running task (its thread is ended, the task never finishes)', async () => {
    const service = start();
    const controller = new AbortController();
    const running = settle(service.extract(bytes('hang'), 1, { signal: controller.signal }));
    await eventually(() => (logged().includes('start hang') ? true : undefined), 'the task to start');
    expect(service.stats().busy).toBe(1);
    controller.abort();
    expect((await running).error).toMatchObject({ name: 'AbortError' });
    // The hanging task held the only thread: the pool can serve again only because it was ended.
    await expect(service.extract(bytes('after'), 3)).resolves.toMatchObject({ height: 3 });
    expect(logged()).toEqual(['start hang', 'start after', 'end after']);
  });

  it('aborting the caller’s signal drops a queued task: it never runs', async () => {
    const service = start();
    const blocker = new AbortController();
    const running = settle(service.extract(bytes('hang'), 1, { signal: blocker.signal }));
    await eventually(() => (logged().includes('start hang') ? true : undefined), 'the first task to start');
    const controller = new AbortController();
    const queued = settle(service.extract(bytes('dropped'), 2, { signal: controller.signal }));
    expect(service.stats().queued).toBe(1);
    controller.abort();
    expect((await queued).error).toMatchObject({ name: 'AbortError' });
    blocker.abort();
    await running;
    await expect(service.extract(bytes('later'), 3)).resolves.toMatchObject({ height: 3 });
    expect(logged()).toEqual(['start hang', 'start later', 'end later']);
  });

  it('sends every task the configured limits: decoded bytes, and libvips’ own timeout in whole seconds', async () => {
    const service = start({ PALETTE_MAX_DECODED_MB: '7', PALETTE_TASK_TIMEOUT_MS: '2500' });
    const result = (await service.extract(bytes('limits'), 1)) as unknown as { limits: unknown };
    expect(result.limits).toEqual({ maxDecodedBytes: 7 * 1024 * 1024, timeoutSeconds: 3 });
  });

  it('a worker’s refusal reaches the caller with its clean message; the decoder’s detail does not', async () => {
    const service = start();
    const refused = await settle(service.extract(bytes('refuse'), 1));
    expect(refused.error).toMatchObject({ code: 'UNSUPPORTED_IMAGE', message: 'clean words' });
    expect(JSON.stringify(refused.error) + String((refused.error as Error).message)).not.toContain('libvips');
  });

  it('leaves no listener on a long-lived caller signal once its tasks are done', async () => {
    const service = start();
    const generation = new AbortController();
    for (const command of ['a', 'b', 'c']) await service.extract(bytes(command), 1, { signal: generation.signal });
    expect(getEventListeners(generation.signal, 'abort')).toHaveLength(0);
  });

  it('reads an image given as a file in the worker, and leaves the file to its owner', async () => {
    const service = start();
    const file = join(dir, 'upload-command');
    writeFileSync(file, 'from-a-file');
    await expect(service.extract({ path: file, bytes: 11 }, 4)).resolves.toMatchObject({ height: 4 });
    expect(logged()).toEqual(['start from-a-file', 'end from-a-file']);
    expect(readFileSync(file, 'utf8')).toBe('from-a-file');
  });
});

describe('PaletteService with the real worker and a file', () => {
  it('extracts the palette of an image file', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'palette-file-'));
    const service = new PaletteService(loadConfig({ PALETTE_WORKERS: '1' }), noopPaletteMetrics);
    try {
      const file = join(dir, 'upload-reference');
      const png = await referenceImage('png', { width: 120, height: 80 });
      writeFileSync(file, png);
      const palette = await service.extract({ path: file, bytes: png.length }, 3);
      expect(palette).toMatchObject({ width: 120, height: 80, format: 'png' });
      expect(palette.colors.map((c) => c.hex)).toEqual(['#d43434', '#2a4d9b', '#f2e8cf']);
    } finally {
      await service.onModuleDestroy();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
