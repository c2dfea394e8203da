/**
 * `npm run bench -- upload-memory`: what many slow, large uploads at once cost the service.
 *
 * Starts the built service (`dist/main.js`) as a child process with the production memory settings,
 * then opens `BENCH_UPLOADS` (default 100) concurrent `POST /api/v1/palettes` uploads of one
 * `BENCH_UPLOAD_MB` (default 20) MB noisy PNG, each holding back its last 64 kB. While they hang it
 * reads the service's RSS from /proc/<pid>/status and times `GET /health/live`; then it lets every
 * upload finish, records the answers, waits for the service to settle and reads RSS again.
 *
 * Two runs, each against a fresh service: `defaults` (the shipped upload bound) and `unbounded`
 * (`UPLOAD_MAX_INFLIGHT_MB` large enough to admit every upload, so all of them reach the palette pool).
 * The service's own settings win for anything else. Progress goes to stderr.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { Agent, request } from 'node:http';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import sharp from 'sharp';
import { PRODUCTION_MEMORY_ENV } from '../load/processes';
import { seededRandom } from '../support/images';
import { startService, type ServiceProcess } from '../support/service-process';

const HOLD_BACK_BYTES = 64 * 1024;
const SETTLE_MS = 10_000;
const SAMPLE_EVERY_MS = 250;
const LIVE_EVERY_MS = 200;
const BOUNDARY = 'bench-upload-boundary';

const log = (line: string) => process.stderr.write(`[upload-memory.bench] ${line}\n`);
const mb = (bytes: number) => Math.round(bytes / 1048576);
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** VmRSS and VmHWM (peak RSS) of a process, in bytes. */
function memoryOf(pid: number): { rss: number; hwm: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN) * 1024;
  return { rss: kb('VmRSS'), hwm: kb('VmHWM') };
}

/** A PNG of RGB noise just under `megabytes` MB (noise does not compress: the file is the pixels). */
async function noisyPng(megabytes: number): Promise<Buffer> {
  const side = Math.floor(Math.sqrt((megabytes * 1048576 * 0.97) / 3));
  const rand = seededRandom(20);
  const pixels = Buffer.allocUnsafe(side * side * 3);
  for (let i = 0; i < pixels.length; i++) pixels[i] = (rand() * 256) | 0;
  return sharp(pixels, { raw: { width: side, height: side, channels: 3 } }).png().toBuffer();
}

interface Upload {
  /** Resolves once everything but the held-back bytes has been handed to the socket. */
  sent: Promise<void>;
  finish(): void;
  answer: Promise<{ status: number; code: string | undefined; retryAfter: string | undefined }>;
}

function startUpload(baseUrl: string, agent: Agent, image: Buffer): Upload {
  const head = Buffer.from(
    `--${BOUNDARY}\r\nContent-Disposition: form-data; name="image"; filename="big.png"\r\nContent-Type: image/png\r\n\r\n`,
  );
  const tail = Buffer.from(`\r\n--${BOUNDARY}--\r\n`);
  const cut = image.length - HOLD_BACK_BYTES;
  const req = request(`${baseUrl}/api/v1/palettes`, {
    method: 'POST',
    agent,
    headers: { 'content-type': `multipart/form-data; boundary=${BOUNDARY}`, 'content-length': head.length + image.length + tail.length },
  });
  const answer = new Promise<{ status: number; code: string | undefined; retryAfter: string | undefined }>((resolve) => {
    req.on('response', (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => {
        let code: string | undefined;
        try {
          code = (JSON.parse(body) as { code?: string }).code;
        } catch {
          code = undefined;
        }
        resolve({ status: res.statusCode ?? 0, code, retryAfter: res.headers['retry-after'] as string | undefined });
      });
    });
    req.on('error', (error) => resolve({ status: 0, code: (error as NodeJS.ErrnoException).code ?? error.message, retryAfter: undefined }));
  });
  req.write(head);
  const sent = new Promise<void>((resolve) => req.write(image.subarray(0, cut), () => resolve()));
  // An early answer (a refusal) ends the wait for the socket too.
  const sentOrAnswered = Promise.race([sent, answer.then(() => undefined)]);
  return {
    sent: sentOrAnswered,
    finish: () => {
      if (req.destroyed) return;
      req.write(image.subarray(cut));
      req.end(tail);
    },
    answer,
  };
}

/** `GET /health/live` every LIVE_EVERY_MS until stopped: latencies and failures. */
function probeLiveness(baseUrl: string) {
  const latencies: number[] = [];
  let failures = 0;
  let running = true;
  const loop = (async () => {
    while (running) {
      const started = performance.now();
      const ok = await fetch(`${baseUrl}/health/live`, { signal: AbortSignal.timeout(10_000) }).then(
        (r) => r.status === 200,
        () => false,
      );
      if (ok) latencies.push(performance.now() - started);
      else failures++;
      await sleep(LIVE_EVERY_MS);
    }
  })();
  return {
    async stop() {
      running = false;
      await loop;
      latencies.sort((a, b) => a - b);
      const at = (p: number) => Math.round(latencies[Math.min(latencies.length - 1, Math.floor((latencies.length - 1) * p))] ?? NaN);
      return { probes: latencies.length + failures, failures, p50Ms: at(0.5), p99Ms: at(0.99), maxMs: at(1) };
    },
  };
}

/** Max RSS seen by polling, while `until` is pending. */
async function sampleRss(pid: number, until: Promise<unknown>): Promise<number> {
  let max = 0;
  let done = false;
  void until.finally(() => (done = true));
  while (!done) {
    max = Math.max(max, memoryOf(pid).rss);
    await Promise.race([sleep(SAMPLE_EVERY_MS), until]).catch(() => undefined);
  }
  return Math.max(max, memoryOf(pid).rss);
}

async function runOnce(name: string, image: Buffer, uploads: number, env: Record<string, string>) {
  const tmpDir = await mkdtemp(join(tmpdir(), 'his-bench-uploads-'));
  const service: ServiceProcess = await startService({ ...PRODUCTION_MEMORY_ENV, LOG_LEVEL: 'warn', UPLOAD_TMP_DIR: tmpDir, ...env });
  const agent = new Agent({ keepAlive: false, maxSockets: Infinity });
  let exited = false;
  void service.exited.then(() => (exited = true));
  try {
    await sleep(2000);
    const baseline = memoryOf(service.pid).rss;
    log(`${name}: baseline RSS ${mb(baseline)} MB; opening ${uploads} uploads of ${(image.length / 1048576).toFixed(1)} MB`);
    const live = probeLiveness(service.baseUrl);
    const started = performance.now();
    const all = Array.from({ length: uploads }, () => startUpload(service.baseUrl, agent, image));
    const holding = sampleRss(service.pid, Promise.all(all.map((u) => u.sent)).then(() => sleep(3000)));
    const holdRss = await holding;
    const heldAfterMs = Math.round(performance.now() - started);
    const tempFilesWhileHeld = readdirSync(tmpDir).length;
    log(`${name}: all uploads holding back their last bytes after ${heldAfterMs} ms; RSS max ${mb(holdRss)} MB; ${tempFilesWhileHeld} temp files`);

    for (const u of all) u.finish();
    const answers = Promise.all(all.map((u) => u.answer));
    const processingRss = await sampleRss(service.pid, answers);
    const results = await answers;
    const finishedMs = Math.round(performance.now() - started);
    const liveness = await live.stop();
    const peak = memoryOf(service.pid).hwm;
    await sleep(SETTLE_MS);
    const after = memoryOf(service.pid).rss;
    const statuses: Record<string, number> = {};
    for (const r of results) {
      const key = r.status === 200 ? '200' : `${r.status} ${r.code ?? ''}`.trim();
      statuses[key] = (statuses[key] ?? 0) + 1;
    }
    const retryAfter = [...new Set(results.map((r) => r.retryAfter).filter(Boolean))];
    const liveAtEnd = await fetch(`${service.baseUrl}/health/live`).then((r) => r.status, () => 0);
    const result = {
      env,
      baselineRssMb: mb(baseline),
      holdingRssMaxMb: mb(holdRss),
      processingRssMaxMb: mb(processingRss),
      peakRssMb: mb(peak),
      afterRssMb: mb(after),
      afterMinusBaselineMb: mb(after - baseline),
      settleMs: SETTLE_MS,
      tempFilesWhileHeld,
      tempFilesAfter: readdirSync(tmpDir).length,
      statuses,
      retryAfter,
      heldAfterMs,
      finishedMs,
      liveness,
      liveAtEnd,
      serviceExited: exited,
    };
    log(`${name}: ${JSON.stringify(result)}`);
    return result;
  } finally {
    agent.destroy();
    await service.stop('SIGTERM', 60_000).catch((error: unknown) => log(`stop: ${(error as Error).message.slice(0, 200)}`));
    await rm(tmpDir, { recursive: true, force: true });
  }
}

export async function run(): Promise<Record<string, unknown>> {
  const uploads = Number(process.env.BENCH_UPLOADS ?? 100);
  const megabytes = Number(process.env.BENCH_UPLOAD_MB ?? 20);
  const image = await noisyPng(megabytes);
  if (image.length > megabytes * 1048576) throw new Error(`the test image is ${image.length} bytes, over ${megabytes} MB`);
  const meta = await sharp(image).metadata();
  const loadBefore = loadavg()[0];
  const runs: Record<string, unknown> = {};
  runs.defaults = await runOnce('defaults', image, uploads, {});
  runs.unbounded = await runOnce('unbounded', image, uploads, { UPLOAD_MAX_INFLIGHT_MB: String(Math.ceil((uploads * image.length) / 1048576) + 256) });
  return {
    uploads,
    imageBytes: image.length,
    image: `${meta.width}x${meta.height} RGB noise PNG`,
    holdBackBytes: HOLD_BACK_BYTES,
    load1: { before: loadBefore, after: loadavg()[0] },
    runs,
  };
}
