import { existsSync, readdirSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { createServer, type AddressInfo, type Socket } from 'node:net';
import { join } from 'node:path';
import { startOtlpReceiver, type OtlpReceiver } from '../support/otlp-receiver';
import { S3RVER_CREDENTIALS } from '../support/s3rver';
import { startService, type ServiceProcess } from '../support/service-process';

type Body = Record<string, any>;

/**
 * Graceful shutdown of the BUILT service (`node dist/main.js`, as `npm start` runs it) in a child
 * process: signals, readiness, draining, INTERRUPTED records, and what a restart finds afterwards.
 */
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function eventually<T>(check: () => Promise<T | undefined>, what: string, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

async function json(res: Response): Promise<Body> {
  return (await res.json()) as Body;
}

function client(svc: ServiceProcess) {
  const url = (path: string) => `${svc.baseUrl}${path}`;
  return {
    post: (prompt: string) =>
      fetch(url('/api/v1/generations'), { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ prompt }) }),
    get: (path: string) => fetch(url(path)),
    generation: async (id: string) => json(await fetch(url(`/api/v1/generations/${id}`))),
    untilStage: (id: string, stage: string) =>
      eventually(async () => ((await json(await fetch(url(`/api/v1/generations/${id}`)))).stage === stage ? true : undefined), `${id} at ${stage}`),
  };
}

/** Image files stored for generation `id` in the local image folder. */
function storedFiles(dataDir: string, id: string): string[] {
  const root = join(dataDir, 'images');
  if (!existsSync(root)) return [];
  return (readdirSync(root, { recursive: true }) as string[]).filter((p) => p.includes(id) && /\/\d+\.\w+$/.test(p));
}

const BASE_ENV = { OTEL_SDK_DISABLED: 'true', METRICS_PORT: '0', PALETTE_WORKERS: '1', GEMINI_MAX_CONCURRENCY: '1' };

describe('Graceful shutdown of the service process (integration)', () => {
  let dataDir: string;
  const running: ServiceProcess[] = [];
  const start = async (env: Record<string, string>) => {
    const svc = await startService({ ...BASE_ENV, DATA_DIR: dataDir, ...env });
    running.push(svc);
    return svc;
  };

  beforeEach(async () => {
    dataDir = await mkdtemp(join(tmpdir(), 'his-shutdown-'));
  });

  afterEach(async () => {
    await Promise.allSettled(running.splice(0).map((svc) => svc.stop('SIGKILL')));
    await rm(dataDir, { recursive: true, force: true });
  });

  describe('SIGINT while a generation runs, inside SHUTDOWN_DRAIN_MS', () => {
    let receiver: OtlpReceiver;
    beforeAll(async () => {
      receiver = await startOtlpReceiver();
    });
    afterAll(() => receiver?.close());

    it('readiness turns 503 while the server still answers, new work gets 503, the running one finishes, telemetry is flushed, exit 0', async () => {
      const svc = await start({
        SHUTDOWN_DRAIN_MS: '8000',
        OTEL_SDK_DISABLED: 'false',
        OTEL_EXPORTER_OTLP_ENDPOINT: receiver.endpoint,
        // Only the shutdown flush can deliver within this test.
        OTEL_METRIC_EXPORT_INTERVAL: '600000',
        OTEL_BSP_SCHEDULE_DELAY: '600000',
      });
      const api = client(svc);
      await api.get('/health/ready').then((r) => expect(r.status).toBe(200));
      const accepted = await json(await api.post('a lighthouse at dusk [emulator:latency=1500]'));
      await api.untilStage(accepted.id, 'gemini');

      const exit = svc.stop('SIGINT');
      const notReady = await eventually(async () => {
        const res = await api.get('/health/ready');
        return res.status === 503 ? json(res) : undefined;
      }, 'readiness to turn 503');
      expect(notReady.details.lifecycle).toMatchObject({ status: 'down', message: 'shutting down' });
      // Still serving during the drain: liveness, reads, and a clear refusal of new work.
      expect((await api.get('/health/live')).status).toBe(200);
      expect((await api.generation(accepted.id)).status).toBe('running');
      const refused = await api.post('one more please');
      expect(refused.status).toBe(503);
      expect(refused.headers.get('retry-after')).toMatch(/^\d+$/);
      expect(await json(refused)).toEqual({ statusCode: 503, code: 'SHUTTING_DOWN', message: expect.any(String) });

      expect(await exit).toEqual({ code: 0, signal: null });
      expect(svc.logs()).toContain('Drained: 1 image job(s) finished, 0 interrupted');
      // The pipeline span of the drained generation and its metrics arrived only through the final flush.
      expect(receiver.spans().map((s) => s.name)).toContain('pipeline.image');
      expect(receiver.metricNames()).toContain('pipeline.generations');

      const restarted = await start({});
      const done = await client(restarted).generation(accepted.id);
      expect(done).toMatchObject({ status: 'succeeded', stage: 'done', error: null });
      const image = await client(restarted).get(done.images[0].url);
      expect(image.status).toBe(200);
      expect((await image.arrayBuffer()).byteLength).toBe(done.images[0].bytes);
      expect(storedFiles(dataDir, accepted.id)).toHaveLength(1);
    });
  });

  it('SIGTERM with work that outlives SHUTDOWN_DRAIN_MS: running and queued generations are recorded failed/INTERRUPTED, no image is left, exit 0', async () => {
    const svc = await start({ SHUTDOWN_DRAIN_MS: '300', GEMINI_TIMEOUT_MS: '60000' });
    const api = client(svc);
    const runningOne = await json(await api.post('an endless staircase [emulator:hang]'));
    await api.untilStage(runningOne.id, 'gemini');
    const queuedOne = await json(await api.post('a second endless staircase [emulator:hang]'));
    expect(queuedOne.status).toBe('queued');

    expect(await svc.stop('SIGTERM')).toEqual({ code: 0, signal: null });
    expect(svc.logs()).toContain('Drained: 0 image job(s) finished, 2 interrupted');

    const restarted = await start({});
    // Written by the shutdown itself: start-up recovery found nothing left unfinished.
    expect(restarted.logs()).toContain('No unfinished generations from a previous run');
    for (const id of [runningOne.id, queuedOne.id]) {
      const g = await client(restarted).generation(id);
      expect(g).toMatchObject({ status: 'failed', images: [], error: { code: 'INTERRUPTED' } });
      expect(g.completedAt).not.toBeNull();
      expect(storedFiles(dataDir, id)).toEqual([]);
    }
    expect((await client(restarted).generation(queuedOne.id)).startedAt).toBeNull();
  });

  it('SIGTERM while an upload hangs on an unresponsive S3: the upload is aborted, the generation INTERRUPTED, exit 0', async () => {
    const held = new Set<Socket>();
    const blackhole = createServer((socket) => {
      held.add(socket);
      // Read and drop what arrives (a paused socket would never notice the client hanging up).
      socket.resume();
      socket.on('close', () => held.delete(socket));
    });
    await new Promise<void>((done) => blackhole.listen(0, '127.0.0.1', done));
    try {
      const svc = await start({
        SHUTDOWN_DRAIN_MS: '300',
        S3_BUCKET: 'silent-bucket',
        S3_ENDPOINT: `http://127.0.0.1:${(blackhole.address() as AddressInfo).port}`,
        S3_FORCE_PATH_STYLE: 'true',
        AWS_ACCESS_KEY_ID: S3RVER_CREDENTIALS.accessKeyId,
        AWS_SECRET_ACCESS_KEY: S3RVER_CREDENTIALS.secretAccessKey,
        AWS_EC2_METADATA_DISABLED: 'true',
      });
      const api = client(svc);
      const g = await json(await api.post('a letter that never arrives'));
      await api.untilStage(g.id, 'upload');

      // Without aborting the upload, the drain would wait for the S3 client's own timeouts (minutes).
      expect(await svc.stop('SIGTERM')).toEqual({ code: 0, signal: null });
      expect(svc.logs()).toContain('Drained: 0 image job(s) finished, 1 interrupted');

      const restarted = await start({});
      expect(await client(restarted).generation(g.id)).toMatchObject({ status: 'failed', stage: 'upload', images: [], error: { code: 'INTERRUPTED' } });
    } finally {
      for (const socket of held) socket.destroy();
      await new Promise((done) => blackhole.close(done));
    }
  });

  it('SIGKILL (no drain at all): the next start records the unfinished generation failed/INTERRUPTED', async () => {
    const svc = await start({ GEMINI_TIMEOUT_MS: '60000' });
    const api = client(svc);
    const g = await json(await api.post('a frozen river [emulator:hang]'));
    await api.untilStage(g.id, 'gemini');
    expect(await svc.stop('SIGKILL')).toEqual({ code: null, signal: 'SIGKILL' });

    const restarted = await start({});
    expect(restarted.logs()).toMatch(/Marked 1 unfinished generation/);
    expect(await client(restarted).generation(g.id)).toMatchObject({ status: 'failed', images: [], error: { code: 'INTERRUPTED' } });
    expect((await client(restarted).get('/health/ready')).status).toBe(200);
  });
});
