import { ChildProcess, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';

/** The package root, found upwards from here: this file also runs compiled, from another depth. */
export function packageRoot(from = __dirname): string {
  for (let dir = from; ; dir = dirname(dir)) {
    if (existsSync(join(dir, 'package.json')) && existsSync(join(dir, 'node_modules'))) return dir;
    if (dirname(dir) === dir) throw new Error(`no package root above ${from}`);
  }
}

const ROOT = packageRoot();
/** The built service; `npm test` runs `nest build` first. */
export const SERVICE_ENTRY = join(ROOT, 'dist', 'main.js');
const MAX_LOG_CHARS = 4_000_000;

export interface ServiceExit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface ServiceProcess {
  /** `http://127.0.0.1:<PORT>` */
  readonly baseUrl: string;
  /** `http://127.0.0.1:<METRICS_PORT>/metrics`, or undefined when METRICS_PORT=0. */
  readonly metricsUrl: string | undefined;
  readonly port: number;
  readonly metricsPort: number;
  readonly pid: number;
  readonly dataDir: string;
  /** What the process wrote to stdout and stderr (the last 4 MB). */
  logs(): string;
  /** stdout lines that parse as JSON (pino's structured logs). */
  jsonLogs(): Record<string, unknown>[];
  /** Resolves when the process has exited, however that happened. */
  readonly exited: Promise<ServiceExit>;
  /**
   * Sends `signal` (default SIGTERM) and waits for the exit. After `timeoutMs` the process is
   * killed and the promise rejects: a service that does not stop on SIGTERM is a bug. Deletes the
   * temporary DATA_DIR this helper created.
   */
  stop(signal?: NodeJS.Signals, timeoutMs?: number): Promise<ServiceExit>;
}

/** The last MAX_LOG_CHARS of a stream, kept as chunks: a busy service under load writes a lot. */
class LogBuffer {
  private chunks: Buffer[] = [];
  private size = 0;
  push(chunk: Buffer): void {
    this.chunks.push(chunk);
    this.size += chunk.length;
    while (this.size > MAX_LOG_CHARS && this.chunks.length > 1) this.size -= this.chunks.shift()!.length;
  }
  text(): string {
    return Buffer.concat(this.chunks).toString('utf8');
  }
}

export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((done) => server.listen(0, '127.0.0.1', done));
  const { port } = server.address() as { port: number };
  await new Promise((done) => server.close(done));
  return port;
}

/**
 * Starts the built service (`node dist/main.js`) as its own process, the way `npm start` does,
 * on free ports with a temporary DATA_DIR and no GEMINI_API_KEY (so the in-process emulator
 * answers), and waits until `/health/live` answers 200. `env` adds to or overrides that
 * environment; a value of `undefined` removes a variable. The parent's OTEL_*, GEMINI_*, S3_*,
 * DATABASE_* and REDIS_URL variables are not passed on, so a developer's shell cannot point a test
 * at a real backend. `options.serviceDir` runs another checkout's built service (its `dist/main.js`,
 * with that checkout as the working directory) instead of this one's: a benchmark comparing an old
 * commit with today's.
 */
export async function startService(
  env: Record<string, string | undefined> = {},
  options: { readyTimeoutMs?: number; serviceDir?: string } = {},
): Promise<ServiceProcess> {
  const cwd = options.serviceDir ?? ROOT;
  const entry = options.serviceDir === undefined ? SERVICE_ENTRY : join(options.serviceDir, 'dist', 'main.js');
  if (!existsSync(entry)) {
    throw new Error(`${entry} is missing: run \`npm run build\` there (npm test builds first)`);
  }
  const ownDataDir = env.DATA_DIR === undefined;
  const dataDir = env.DATA_DIR ?? (await mkdtemp(join(tmpdir(), 'his-service-')));
  const port = env.PORT ? Number(env.PORT) : await freePort();
  const metricsPort = env.METRICS_PORT !== undefined ? Number(env.METRICS_PORT) : await freePort();

  const inherited = Object.fromEntries(
    Object.entries(process.env).filter(([key]) => !/^(OTEL_|GEMINI_|S3_|AWS_|METRICS_|DATABASE_|REDIS_URL$|PORT$|DATA_DIR$|API_KEYS$)/.test(key)),
  );
  const childEnv: Record<string, string> = {};
  for (const [key, value] of Object.entries({
    ...inherited,
    LOG_LEVEL: 'info',
    PORT: String(port),
    METRICS_PORT: String(metricsPort),
    DATA_DIR: dataDir,
    ...env,
  })) {
    if (value !== undefined) childEnv[key] = value;
  }

  const child = spawn(process.execPath, [entry], { cwd, env: childEnv, stdio: ['ignore', 'pipe', 'pipe'] });
  const all = new LogBuffer();
  const stdoutOnly = new LogBuffer();
  child.stdout!.on('data', (c: Buffer) => {
    all.push(c);
    stdoutOnly.push(c);
  });
  child.stderr!.on('data', (c: Buffer) => all.push(c));
  const output = () => all.text();
  const exited = new Promise<ServiceExit>((done) => child.once('exit', (code, signal) => done({ code, signal })));

  const baseUrl = `http://127.0.0.1:${port}`;
  try {
    await waitUntilLive(baseUrl, child, exited, options.readyTimeoutMs ?? 30_000, output);
  } catch (error) {
    child.kill('SIGKILL');
    await exited;
    if (ownDataDir) await rm(dataDir, { recursive: true, force: true });
    throw error;
  }

  let stopping: Promise<ServiceExit> | undefined;
  return {
    baseUrl,
    metricsUrl: metricsPort > 0 ? `http://127.0.0.1:${metricsPort}/metrics` : undefined,
    port,
    metricsPort,
    pid: child.pid!,
    dataDir,
    exited,
    logs: output,
    jsonLogs: () =>
      stdoutOnly
        .text()
        .split('\n')
        .filter((line) => line.startsWith('{'))
        .flatMap((line) => {
          try {
            return [JSON.parse(line) as Record<string, unknown>];
          } catch {
            return [];
          }
        }),
    stop: (signal: NodeJS.Signals = 'SIGTERM', timeoutMs = 30_000) =>
      (stopping ??= stopChild(child, exited, signal, timeoutMs, output).finally(async () => {
        if (ownDataDir) await rm(dataDir, { recursive: true, force: true });
      })),
  };
}

async function waitUntilLive(
  baseUrl: string,
  child: ChildProcess,
  exited: Promise<ServiceExit>,
  timeoutMs: number,
  logs: () => string,
): Promise<void> {
  let exit: ServiceExit | undefined;
  void exited.then((e) => (exit = e));
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (exit) throw new Error(`service exited early (code ${exit.code}, signal ${exit.signal}):\n${logs().slice(-4000)}`);
    const ok = await fetch(`${baseUrl}/health/live`, { signal: AbortSignal.timeout(1000) }).then(
      (r) => r.status === 200,
      () => false,
    );
    if (ok) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`service (pid ${child.pid}) not live after ${timeoutMs} ms:\n${logs().slice(-4000)}`);
}

async function stopChild(
  child: ChildProcess,
  exited: Promise<ServiceExit>,
  signal: NodeJS.Signals,
  timeoutMs: number,
  logs: () => string,
): Promise<ServiceExit> {
  if (child.exitCode !== null || child.signalCode !== null) return exited;
  child.kill(signal);
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<'timeout'>((done) => (timer = setTimeout(() => done('timeout'), timeoutMs)));
  const result = await Promise.race([exited, timedOut]);
  clearTimeout(timer);
  if (result === 'timeout') {
    child.kill('SIGKILL');
    await exited;
    throw new Error(`service (pid ${child.pid}) did not exit within ${timeoutMs} ms of ${signal}:\n${logs().slice(-4000)}`);
  }
  return result;
}
