import { ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { freePort } from './service-process';

/**
 * Redis for tests. Most tests share the server given by `TEST_REDIS_URL` (default: the local one
 * that scripts/install-test-deps.sh starts) and keep apart by a key prefix of their own; a test that
 * must stop and restart Redis starts a private `redis-server` instead (`startRedisServer`).
 */
export const TEST_REDIS_URL = process.env.TEST_REDIS_URL || 'redis://127.0.0.1:6379';

/** Debian's binary, unless `REDIS_SERVER_BIN` names another (or it is on PATH). */
const REDIS_SERVER_BIN = process.env.REDIS_SERVER_BIN || (existsSync('/usr/bin/redis-server') ? '/usr/bin/redis-server' : 'redis-server');

/**
 * A key prefix no other test run or file uses: `his_<topic>_<pid>_<random>`. No `:` inside, so it
 * also works where BullMQ forbids one; callers add their own separator.
 */
export function uniquePrefix(topic = 'test'): string {
  return `his_${topic.replace(/[^A-Za-z0-9_-]/g, '_')}_${process.pid}_${randomBytes(4).toString('hex')}`;
}

/** Deletes every key that starts with `prefix` (SCAN, not KEYS); returns how many. */
export async function deleteKeys(prefix: string, url = TEST_REDIS_URL): Promise<number> {
  if (prefix.length < 4) throw new Error(`refusing to delete keys by the short prefix ${JSON.stringify(prefix)}`);
  const redis = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 1 });
  try {
    await redis.connect();
    let deleted = 0;
    const pattern = `${prefix.replace(/[*?[\]\\]/g, '\\$&')}*`;
    for await (const keys of redis.scanStream({ match: pattern, count: 500 }) as AsyncIterable<string[]>) {
      if (keys.length > 0) deleted += await redis.unlink(...keys);
    }
    return deleted;
  } finally {
    redis.disconnect();
  }
}

export interface PrivateRedis {
  readonly port: number;
  /** `redis://127.0.0.1:<port>` */
  readonly url: string;
  readonly running: boolean;
  /** The server's process id while it runs (for its CPU in /proc). */
  readonly pid: number | undefined;
  /** Stops the server (default SIGTERM; SIGKILL for a crash) and waits for its exit. */
  stop(signal?: NodeJS.Signals): Promise<void>;
  /** Starts it again on the same port, empty (nothing is persisted). */
  start(): Promise<void>;
  /** What the server printed (for failure messages). */
  logs(): string;
}

const live = new Set<ChildProcess>();
process.once('exit', () => {
  for (const child of live) child.kill('SIGKILL');
});

/**
 * Starts a private `redis-server` on a free port as a child process (`--save "" --appendonly no`,
 * in a temporary folder) and waits until it accepts connections. Stop it in `afterAll`; a process
 * left running when the test process exits is killed then.
 */
export async function startRedisServer(options: { port?: number; readyTimeoutMs?: number } = {}): Promise<PrivateRedis> {
  const port = options.port ?? (await freePort());
  const readyTimeoutMs = options.readyTimeoutMs ?? 20_000;
  const dir = await mkdtemp(join(tmpdir(), 'his-redis-'));
  let child: ChildProcess | undefined;
  let exited: Promise<void> = Promise.resolve();
  let output = '';

  const start = async (): Promise<void> => {
    if (child) throw new Error('redis-server is already running');
    output = '';
    await mkdir(dir, { recursive: true });
    const proc = spawn(
      REDIS_SERVER_BIN,
      ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--daemonize', 'no', '--dir', dir],
      { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    child = proc;
    live.add(proc);
    exited = new Promise<void>((resolve) => {
      proc.once('exit', () => {
        live.delete(proc);
        if (child === proc) child = undefined;
        resolve();
      });
    });
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => fail(new Error(`redis-server did not get ready within ${readyTimeoutMs} ms`)), readyTimeoutMs);
      const onData = (chunk: Buffer) => {
        output += chunk.toString('utf8');
        if (output.includes('Ready to accept connections')) {
          clearTimeout(timer);
          resolve();
        }
      };
      const fail = (error: Error) => {
        clearTimeout(timer);
        proc.kill('SIGKILL');
        reject(new Error(`${error.message}\n${output}`));
      };
      proc.stdout!.on('data', onData);
      proc.stderr!.on('data', onData);
      proc.once('error', fail);
      proc.once('exit', (code, signal) => fail(new Error(`redis-server exited (${code ?? signal}) before it was ready`)));
    });
  };

  const stop = async (signal: NodeJS.Signals = 'SIGTERM'): Promise<void> => {
    const proc = child;
    if (!proc) return;
    proc.kill(signal);
    const timer = setTimeout(() => proc.kill('SIGKILL'), 10_000);
    await exited;
    clearTimeout(timer);
  };

  try {
    await start();
  } catch (error) {
    await rm(dir, { recursive: true, force: true });
    throw error;
  }

  return {
    port,
    url: `redis://127.0.0.1:${port}`,
    get running() {
      return child !== undefined;
    },
    get pid() {
      return child?.pid;
    },
    start,
    async stop(signal) {
      await stop(signal);
      await rm(dir, { recursive: true, force: true });
    },
    logs: () => output,
  };
}
