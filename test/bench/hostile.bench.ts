/**
 * `npm run bench -- hostile [--service-dir=<checkout>]`: what the attacks from the security review
 * cost the running service. Each measurement starts the built service (`<checkout>/dist/main.js`,
 * default this checkout) afresh as a child process, as `npm start` runs it (production memory
 * settings, LOG_LEVEL=warn, METRICS_PORT=0, free port on 127.0.0.1, its own temp DATA_DIR), and
 * reports what happened, including the process dying (`crashed: true`) or never answering:
 *
 * 1. `lockedDatabase`: another process holds `BEGIN IMMEDIATE` on the SQLite file for 15 s while 20
 *    `POST /api/v1/generations` arrive at once and `GET /health/live` is fired every 250 ms.
 * 2. `disguisedSvg`: a 12 MB SVG of 180 000 circles on an 8000² canvas, prefixed `<!--ftypavif-->`
 *    so a magic-byte check takes it for AVIF, sent to `POST /api/v1/palettes`.
 * 3. `deepPng` / `bigGif`: a 16-bit interlaced 10 000² PNG (≈ 600 kB, one flat colour) and a
 *    10 000² GIF (≈ 66 kB), each to `POST /api/v1/palettes`.
 * 4. `randomKeys`: `RATE_LIMIT_PER_MINUTE=5`, no API keys, 20 GETs each with a fresh random `x-api-key`.
 * 5. `letterCase`: `API_KEYS` set, `/API/v1/…` and `/Api/v1/…` requests without a key.
 * 6. `eventStreams`: `/events` streams of one running generation opened one after another from one
 *    client until one is refused or 300 are open.
 *
 * Pointing `--service-dir` at a checkout of an older commit (built there with `npx nest build`)
 * measures it the same way. A readable table goes to stdout before main.ts prints the JSON summary;
 * progress goes to stderr. Every loop is bounded in count and time; all traffic goes to 127.0.0.1.
 */
import { execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { Agent, request, type ClientRequest } from 'node:http';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import sharp from 'sharp';
import { PRODUCTION_MEMORY_ENV } from '../load/processes';
import { packageRoot, startService, type ServiceExit, type ServiceProcess } from '../support/service-process';

const DATABASE_FILE = 'hybrid-image-search.sqlite';
const LOCK_HOLD_MS = 15_000;
const LOCKED_POSTS = 20;
const LIVE_EVERY_MS = 250;
const MAX_PROBES = 400; // 100 s of probes at most
const PROBE_TIMEOUT_MS = 20_000;
const REQUEST_TIMEOUT_MS = 60_000;
const UPLOAD_TIMEOUT_MS = 180_000;
const SETTLE_MS = 2_000;
const RATE_LIMIT = 5;
const RANDOM_KEY_REQUESTS = 20;
const API_KEYS = 'alice:alice-secret-key-0123';
const MAX_STREAMS = 300;
const STREAM_OPEN_TIMEOUT_MS = 10_000;
const SVG_SIDE = 8000;
const SVG_BYTES = 12 * 1024 * 1024;
const BOMB_SIDE = 10_000;

const log = (line: string) => process.stderr.write(`[hostile.bench] ${line}\n`);
const sleep = (ms: number) => new Promise((done) => setTimeout(done, ms));
const round = (n: number) => Math.round(n);
const mb = (bytes: number) => Math.round(bytes / 1048576);

interface Answer {
  status: number;
  code?: string;
  ms: number;
}

/** Why a request got no HTTP answer: TIMEOUT, or the socket's error code (ECONNRESET, …). */
function failureCode(error: unknown): string {
  const e = error as Error & { cause?: { code?: string } };
  if (e.name === 'TimeoutError') return 'TIMEOUT';
  return e.cause?.code ?? e.name ?? 'ERROR';
}

/** One request to the service: status (0 when there was no answer) and the body's `code`. */
async function call(url: string, init: RequestInit, timeoutMs = REQUEST_TIMEOUT_MS): Promise<Answer> {
  const started = performance.now();
  try {
    const res = await fetch(url, { ...init, signal: AbortSignal.timeout(timeoutMs) });
    const text = await res.text();
    let code: string | undefined;
    try {
      code = (JSON.parse(text) as { code?: unknown }).code as string | undefined;
    } catch {
      code = undefined;
    }
    return { status: res.status, ...(typeof code === 'string' ? { code } : {}), ms: round(performance.now() - started) };
  } catch (error) {
    return { status: 0, code: failureCode(error), ms: round(performance.now() - started) };
  }
}

/** ` (ECONNRESET)` for a request that got no answer, else nothing. */
function causeOf(error: unknown): string {
  const code = (error as { cause?: { code?: string } }).cause?.code;
  return code ? ` (${code})` : '';
}

const label = (a: Pick<Answer, 'status' | 'code'>) => (a.status === 0 ? `no answer (${a.code})` : `${a.status}${a.code ? ` ${a.code}` : ''}`);

function countBy(answers: readonly Answer[]): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const a of answers) counts[label(a)] = (counts[label(a)] ?? 0) + 1;
  return counts;
}

const postJson = (baseUrl: string, path: string, body: unknown, headers: Record<string, string> = {}) =>
  call(`${baseUrl}${path}`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body) });

/** VmRSS of a process in MB, or undefined once it is gone. */
function rssMb(pid: number): number | undefined {
  try {
    const kb = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1];
    return kb === undefined ? undefined : Math.round(Number(kb) / 1024);
  } catch {
    return undefined;
  }
}

/** The largest RSS seen, polling every 100 ms until `stop()`. */
function sampleRss(pid: number) {
  let max = rssMb(pid) ?? 0;
  const timer = setInterval(() => (max = Math.max(max, rssMb(pid) ?? 0)), 100);
  return {
    stop() {
      clearInterval(timer);
      return Math.max(max, rssMb(pid) ?? 0);
    },
  };
}

/** `GET /health/live` fired every LIVE_EVERY_MS (not waiting for the previous one) until `stop()`. */
function probeLiveness(baseUrl: string) {
  const probes: Promise<Answer>[] = [];
  const timer = setInterval(() => {
    if (probes.length < MAX_PROBES) probes.push(call(`${baseUrl}/health/live`, {}, PROBE_TIMEOUT_MS));
  }, LIVE_EVERY_MS);
  return {
    async stop() {
      clearInterval(timer);
      const answers = await Promise.all(probes);
      const ms = answers.map((a) => a.ms).sort((a, b) => a - b);
      const failed = answers.filter((a) => a.status !== 200);
      return {
        probes: answers.length,
        failed: failed.length,
        ...(failed.length > 0 ? { failures: countBy(failed) } : {}),
        medianMs: ms[Math.floor((ms.length - 1) / 2)] ?? null,
        maxMs: ms.at(-1) ?? null,
        over1s: ms.filter((m) => m > 1000).length,
      };
    },
  };
}

interface Context {
  serviceDir: string;
  root: string;
}

type Outcome = { crashed: boolean; exit?: ServiceExit; liveAfter?: number };

/**
 * Runs `measure` against a fresh service with `env` added; afterwards records whether the process
 * had died (and how) and what `/health/live` answers, then stops it. A service that does not start
 * is reported as `startFailed`, a measurement that could not finish as `error`: neither is thrown.
 */
async function withService<T extends object>(
  ctx: Context,
  name: string,
  env: Record<string, string | undefined>,
  measure: (service: ServiceProcess) => Promise<T>,
): Promise<((T | { error: string }) & Outcome) | { startFailed: string }> {
  const dir = join(ctx.root, name);
  await mkdir(join(dir, 'data'), { recursive: true });
  await mkdir(join(dir, 'uploads'), { recursive: true });
  let service: ServiceProcess;
  try {
    service = await startService(
      {
        ...PRODUCTION_MEMORY_ENV,
        LOG_LEVEL: 'warn',
        METRICS_PORT: '0',
        HOST: '127.0.0.1',
        DATA_DIR: join(dir, 'data'),
        UPLOAD_TMP_DIR: join(dir, 'uploads'),
        SHUTDOWN_DRAIN_MS: '2000',
        API_KEYS: undefined,
        RATE_LIMIT_PER_MINUTE: undefined,
        ...env,
      },
      { serviceDir: ctx.serviceDir },
    );
  } catch (error) {
    log(`${name}: the service did not start: ${(error as Error).message.slice(0, 2000)}`);
    return { startFailed: (error as Error).message.split('\n')[0] };
  }
  let exit: ServiceExit | undefined;
  void service.exited.then((e) => (exit = e));
  try {
    log(`${name}: service pid ${service.pid} on ${service.baseUrl}`);
    // A measurement cut short (the service died mid-way, an answer nobody expected) is reported, not thrown.
    const result: T | { error: string } = await measure(service).catch((error: unknown) => ({
      error: `${(error as Error).message}${causeOf(error)}`,
    }));
    await sleep(100); // lets an exit that has just happened be seen
    const outcome: Outcome = exit
      ? { crashed: true, exit }
      : { crashed: false, liveAfter: (await call(`${service.baseUrl}/health/live`, {}, 10_000)).status };
    if (exit) log(`${name}: the service exited (code ${exit.code}, signal ${exit.signal}):\n${service.logs().slice(-2000)}`);
    log(`${name}: ${JSON.stringify({ ...result, ...outcome })}`);
    return { ...result, ...outcome };
  } finally {
    await service.stop('SIGTERM', 30_000).catch((error: unknown) => log(`${name}: stop: ${(error as Error).message.slice(0, 300)}`));
  }
}

/** Another process holding SQLite's write lock on `file` for `holdMs`, then rolling back and exiting. */
async function holdWriteLock(file: string, holdMs: number) {
  const script = `
    const { DatabaseSync } = require('node:sqlite');
    const db = new DatabaseSync(process.argv[1]);
    db.exec('PRAGMA busy_timeout = 10000');
    db.exec('BEGIN IMMEDIATE');
    const locked = Date.now();
    process.stdout.write('locked\\n');
    setTimeout(() => {
      db.exec('ROLLBACK');
      db.close();
      process.stdout.write('released ' + (Date.now() - locked) + '\\n');
      process.exit(0);
    }, Number(process.argv[2]));
  `;
  const child = spawn(process.execPath, ['-e', script, file, String(holdMs)], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
  child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
  const exited = new Promise<number | null>((done) => child.once('exit', (code) => done(code)));
  await new Promise<void>((done, fail) => {
    child.stdout.on('data', () => stdout.includes('locked') && done());
    void exited.then((code) => fail(new Error(`lock holder exited (${code}) before locking: ${stderr.slice(0, 500)}`)));
  });
  return {
    /** Resolves with how long the lock was held once the holder has released it and exited. */
    released: exited.then((code) => ({ code, heldMs: Number(/released (\d+)/.exec(stdout)?.[1] ?? NaN) })),
    kill: () => child.exitCode === null && child.signalCode === null && child.kill('SIGKILL'),
  };
}

function lockedDatabase(ctx: Context) {
  return withService(ctx, 'lockedDatabase', {}, async (service) => {
    const file = join(service.dataDir, DATABASE_FILE);
    if (!existsSync(file)) throw new Error(`${file} does not exist: the service keeps its database elsewhere`);
    const holder = await holdWriteLock(file, LOCK_HOLD_MS);
    try {
      log(`lockedDatabase: lock held; ${LOCKED_POSTS} POSTs at once, /health/live every ${LIVE_EVERY_MS} ms`);
      const live = probeLiveness(service.baseUrl);
      const posts = await Promise.all(
        Array.from({ length: LOCKED_POSTS }, () => postJson(service.baseUrl, '/api/v1/generations', { prompt: 'a red square' })),
      );
      const released = await holder.released;
      await sleep(1000);
      return {
        lockHeldMs: released.heldMs,
        posts: countBy(posts),
        allAnsweredMs: Math.max(...posts.map((p) => p.ms)),
        live: await live.stop(),
      };
    } finally {
      holder.kill();
    }
  });
}

interface UploadFile {
  bytes: Buffer;
  contentType: string;
  filename: string;
  what: string;
}

function upload(ctx: Context, name: string, file: UploadFile) {
  return withService(ctx, name, {}, async (service) => {
    await sleep(SETTLE_MS);
    const before = rssMb(service.pid);
    const sampler = sampleRss(service.pid);
    const form = new FormData();
    form.append('image', new Blob([new Uint8Array(file.bytes)], { type: file.contentType }), file.filename);
    log(`${name}: POST /api/v1/palettes with ${file.what} (${file.bytes.length} bytes)`);
    const answer = await call(`${service.baseUrl}/api/v1/palettes`, { method: 'POST', body: form }, UPLOAD_TIMEOUT_MS);
    const maxDuring = sampler.stop();
    const after = rssMb(service.pid);
    return {
      image: file.what,
      bytes: file.bytes.length,
      answer: label(answer),
      answerMs: answer.ms,
      rssBeforeMb: before ?? null,
      rssMaxMb: maxDuring,
      rssAfterMb: after ?? null,
      rssMaxDeltaMb: before !== undefined ? maxDuring - before : null,
      rssAfterDeltaMb: before !== undefined && after !== undefined ? after - before : null,
    };
  });
}

/** `<!--ftypavif-->` (bytes 4–11 spell an AVIF ftyp box) + an SVG of overlapping circles, `bytes` long. */
function disguisedSvg(side: number, bytes: number): { bytes: Buffer; shapes: number } {
  const parts = [`<!--ftypavif--><svg xmlns="http://www.w3.org/2000/svg" width="${side}" height="${side}">`];
  let size = parts[0].length;
  let shapes = 0;
  while (size < bytes - 200) {
    const colour = (((shapes * 2654435761) >>> 8) & 0xffffff).toString(16).padStart(6, '0');
    const circle = `<circle cx="${(shapes * 7919) % side}" cy="${(shapes * 104729) % side}" r="${5 + (shapes % 50)}" fill="#${colour}" fill-opacity="0.5"/>`;
    parts.push(circle);
    size += circle.length;
    shapes++;
  }
  parts.push('</svg>');
  return { bytes: Buffer.from(parts.join('')), shapes };
}

/** A real 16-bit, Adam7-interlaced RGB PNG of `side`² pixels of one grey (small: it deflates well). */
async function deepInterlacedPng(side: number): Promise<Buffer> {
  const png = await sharp({ create: { width: side, height: side, channels: 3, background: '#808080' } })
    .toColourspace('rgb16')
    .png({ progressive: true, compressionLevel: 9 })
    .toBuffer();
  // IHDR data at 16: width, height, bit depth, colour type, compression, filter, interlace.
  if (png.readUInt32BE(16) !== side || png[24] !== 16 || png[25] !== 2 || png[28] !== 1) {
    throw new Error(`expected a ${side}² 16-bit RGB interlaced PNG, got depth ${png[24]} type ${png[25]} interlace ${png[28]}`);
  }
  return png;
}

/** A real `side`² GIF of one grey (LZW keeps it small). */
async function flatGif(side: number): Promise<Buffer> {
  const gif = await sharp({ create: { width: side, height: side, channels: 3, background: '#808080' } }).gif().toBuffer();
  if (gif.readUInt16LE(6) !== side || gif.readUInt16LE(8) !== side) throw new Error('the GIF does not have the expected canvas');
  return gif;
}

function randomKeys(ctx: Context) {
  return withService(ctx, 'randomKeys', { RATE_LIMIT_PER_MINUTE: String(RATE_LIMIT) }, async (service) => {
    const answers: Answer[] = [];
    for (let i = 0; i < RANDOM_KEY_REQUESTS; i++) {
      answers.push(await call(`${service.baseUrl}/api/v1/generations`, { headers: { 'x-api-key': randomBytes(16).toString('hex') } }));
    }
    return {
      rateLimitPerMinute: RATE_LIMIT,
      requests: RANDOM_KEY_REQUESTS,
      ok: answers.filter((a) => a.status === 200).length,
      answers: countBy(answers),
    };
  });
}

function letterCase(ctx: Context) {
  return withService(ctx, 'letterCase', { API_KEYS }, async (service) => ({
    getApiLowerCase: label(await call(`${service.baseUrl}/api/v1/generations`, {})),
    getAPIUpperCase: label(await call(`${service.baseUrl}/API/v1/generations`, {})),
    postApiMixedCase: label(await postJson(service.baseUrl, '/Api/v1/generations', { prompt: 'a red square' })),
  }));
}

/** Opens one event stream; resolves with its status once the headers arrive (the stream stays open). */
function openStream(url: string, agent: Agent): Promise<{ answer: Answer; req: ClientRequest }> {
  const started = performance.now();
  const req = request(url, { agent, headers: { accept: 'text/event-stream' } });
  return new Promise((done) => {
    const timer = setTimeout(() => req.destroy(Object.assign(new Error('timeout'), { code: 'TIMEOUT' })), STREAM_OPEN_TIMEOUT_MS);
    req.on('response', (res) => {
      clearTimeout(timer);
      const status = res.statusCode ?? 0;
      if (status === 200) {
        res.resume(); // keep reading events so the stream is not held up by back-pressure
        done({ answer: { status, ms: round(performance.now() - started) }, req });
        return;
      }
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c.slice(0, 10_000)));
      res.on('end', () => {
        let code: string | undefined;
        try {
          code = (JSON.parse(body) as { code?: string }).code;
        } catch {
          code = undefined;
        }
        done({ answer: { status, ...(code ? { code } : {}), ms: round(performance.now() - started) }, req });
      });
    });
    req.on('error', (error) => {
      clearTimeout(timer);
      done({ answer: { status: 0, code: (error as NodeJS.ErrnoException).code ?? error.message, ms: round(performance.now() - started) }, req });
    });
    req.end();
  });
}

function eventStreams(ctx: Context) {
  return withService(ctx, 'eventStreams', {}, async (service) => {
    // The in-process Gemini emulator never answers this prompt: the generation stays running.
    const created = await fetch(`${service.baseUrl}/api/v1/generations`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ prompt: 'a slow red square [emulator:hang]' }),
      signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
    });
    const generation = (await created.json()) as { id?: string };
    if (created.status !== 202 || !generation.id) throw new Error(`creating the generation answered ${created.status}`);
    const agent = new Agent({ keepAlive: false, maxSockets: Infinity });
    const open: ClientRequest[] = [];
    let refused: Answer | undefined;
    try {
      const started = performance.now();
      while (open.length < MAX_STREAMS) {
        const { answer, req } = await openStream(`${service.baseUrl}/api/v1/generations/${generation.id}/events`, agent);
        if (answer.status !== 200) {
          req.destroy();
          refused = answer;
          break;
        }
        open.push(req);
      }
      const openedMs = round(performance.now() - started);
      log(`eventStreams: ${open.length} accepted${refused ? `, then ${label(refused)}` : ''}`);
      return { limit: MAX_STREAMS, accepted: open.length, refusedWith: refused ? label(refused) : null, openedMs };
    } finally {
      for (const req of open) req.destroy();
      agent.destroy();
      await call(`${service.baseUrl}/api/v1/generations/${generation.id}/cancel`, { method: 'POST' }, 10_000);
    }
  });
}

function serviceDirFromArgs(): string {
  const arg = process.argv.find((a) => a.startsWith('--service-dir='));
  return resolve(arg ? arg.slice('--service-dir='.length) : packageRoot());
}

function commitOf(dir: string): string | null {
  try {
    return execFileSync('git', ['-C', dir, 'rev-parse', '--short', 'HEAD'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    return null;
  }
}

type Row = [string, unknown];

function show(value: unknown): string {
  if (value === null || value === undefined) return '–';
  if (typeof value === 'object') return JSON.stringify(value);
  return String(value);
}

/** The summary as aligned `scenario | measure | value` lines. */
function table(results: Record<string, Record<string, unknown>>): string {
  const rows: [string, string, string][] = [];
  for (const [scenario, result] of Object.entries(results)) {
    const entries: Row[] = Object.entries(result).flatMap(([key, value]): Row[] =>
      key === 'live' && value && typeof value === 'object' ? Object.entries(value).map(([k, v]): Row => [`live.${k}`, v]) : [[key, value]],
    );
    entries.forEach(([key, value], i) => rows.push([i === 0 ? scenario : '', key, show(value)]));
  }
  const widths = [0, 1].map((c) => Math.max(...rows.map((r) => r[c].length)));
  return rows.map((r) => `${r[0].padEnd(widths[0])}  ${r[1].padEnd(widths[1])}  ${r[2]}`).join('\n');
}

export async function run(): Promise<Record<string, unknown>> {
  const serviceDir = serviceDirFromArgs();
  if (!existsSync(join(serviceDir, 'dist', 'main.js'))) throw new Error(`${serviceDir}/dist/main.js is missing: build that checkout first`);
  const ctx: Context = { serviceDir, root: await mkdtemp(join(tmpdir(), 'his-bench-hostile-')) };
  log(`service: ${serviceDir} (commit ${commitOf(serviceDir) ?? 'unknown'})`);
  try {
    const svg = disguisedSvg(SVG_SIDE, SVG_BYTES);
    const png = await deepInterlacedPng(BOMB_SIDE);
    const gif = await flatGif(BOMB_SIDE);
    const results: Record<string, Record<string, unknown>> = {};
    results.lockedDatabase = await lockedDatabase(ctx);
    results.disguisedSvg = await upload(ctx, 'disguisedSvg', {
      bytes: svg.bytes,
      contentType: 'image/avif',
      filename: 'photo.avif',
      what: `<!--ftypavif--> + ${SVG_SIDE}² SVG, ${svg.shapes} circles, ${mb(svg.bytes.length)} MB`,
    });
    results.deepPng = await upload(ctx, 'deepPng', {
      bytes: png,
      contentType: 'image/png',
      filename: 'deep.png',
      what: `${BOMB_SIDE}² 16-bit interlaced PNG, ${Math.round(png.length / 1024)} kB`,
    });
    results.bigGif = await upload(ctx, 'bigGif', {
      bytes: gif,
      contentType: 'image/gif',
      filename: 'big.gif',
      what: `${BOMB_SIDE}² GIF, ${Math.round(gif.length / 1024)} kB`,
    });
    results.randomKeys = await randomKeys(ctx);
    results.letterCase = await letterCase(ctx);
    results.eventStreams = await eventStreams(ctx);
    const summary = { serviceDir, commit: commitOf(serviceDir), ...results };
    process.stdout.write(`hostile: ${serviceDir} (commit ${summary.commit ?? 'unknown'})\n${table(results)}\n`);
    return summary;
  } finally {
    await rm(ctx.root, { recursive: true, force: true });
  }
}
