import { randomUUID } from 'node:crypto';
import { Logger } from '@nestjs/common';
import { sleep } from '../common/sleep';
import type { RedisConnections } from '../redis/redis.connections';
import type { GeminiQuota, QuotaLimits } from './gemini-quota';

/** A slot's lease: renewed while its call runs (every third of it), so a killed process frees its slots within this. */
export const LEASE_MS = 15_000;
/** Waiters re-check at least this often (leases can expire without anyone announcing it). */
const POLL_MS = 250;

// Redis's clock for everyone, so instances with skewed clocks agree on expiries and windows.
const NOW = `local t = redis.call('TIME') local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)`;

/** KEYS: holders, client holders (or ''), ARGV: lease id, capacity, per-client share, lease ms → 1 taken / 0 full. */
const ACQUIRE = `${NOW}
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
if KEYS[2] ~= '' then
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
  if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[3]) then return 0 end
  redis.call('ZADD', KEYS[2], now + tonumber(ARGV[4]), ARGV[1])
  redis.call('PEXPIRE', KEYS[2], tonumber(ARGV[4]) * 2)
end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[4]), ARGV[1])
return 1`;

/** KEYS: holders, client holders (or ''), ARGV: lease id, lease ms → 1 still held / 0 lost. */
const RENEW = `${NOW}
redis.call('ZADD', KEYS[1], 'XX', now + tonumber(ARGV[2]), ARGV[1])
if KEYS[2] ~= '' then
  redis.call('ZADD', KEYS[2], 'XX', now + tonumber(ARGV[2]), ARGV[1])
  redis.call('PEXPIRE', KEYS[2], tonumber(ARGV[2]) * 2)
end
return redis.call('ZSCORE', KEYS[1], ARGV[1]) and 1 or 0`;

/** KEYS: holders, client holders (or ''), ARGV: lease id, channel. */
const RELEASE = `redis.call('ZREM', KEYS[1], ARGV[1])
if KEYS[2] ~= '' then redis.call('ZREM', KEYS[2], ARGV[1]) end
redis.call('PUBLISH', ARGV[2], '1')
return 1`;

/** KEYS: starts, paused-until, ARGV: limit per minute (0 = none), member → ms to wait (0 = start now). */
const BEFORE_REQUEST = `${NOW}
local paused = tonumber(redis.call('GET', KEYS[2]) or '0')
if paused > now then return paused - now end
local limit = tonumber(ARGV[1])
if limit == 0 then return 0 end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - 60000)
if redis.call('ZCARD', KEYS[1]) < limit then
  redis.call('ZADD', KEYS[1], now, ARGV[2])
  redis.call('PEXPIRE', KEYS[1], 61000)
  return 0
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return math.max(1, tonumber(oldest[2]) + 60000 - now)`;

/** KEYS: paused-until, ARGV: ms → the pause's end (ms since epoch, Redis clock). */
const PAUSE = `${NOW}
local untilMs = now + tonumber(ARGV[1])
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if current < untilMs then
  redis.call('SET', KEYS[1], untilMs, 'PX', tonumber(ARGV[1]))
  return untilMs
end
return current`;

interface Waiter {
  wake: () => void;
}

type Arg = string | number;
/** The scripts as commands: ioredis sends EVALSHA (the script's digest), and the script itself only once. */
interface QuotaCommands {
  hisQuotaAcquire(...args: Arg[]): Promise<number>;
  hisQuotaRenew(...args: Arg[]): Promise<number>;
  hisQuotaRelease(...args: Arg[]): Promise<number>;
  hisQuotaBeforeRequest(...args: Arg[]): Promise<number>;
  hisQuotaPause(...args: Arg[]): Promise<number>;
}

/**
 * The quota shared by every instance through Redis. Slots are leases in a sorted set (score = expiry)
 * taken and released by Lua scripts, so "at most N in flight over all instances" holds atomically; a
 * lease is renewed while its call runs and expires 15 s after its process dies. A per-client set bounds
 * each client's share the same way. Requests per minute are a sliding window of start times, and a
 * 429's pause is one key every instance checks before each request. Time is Redis's, not the hosts'.
 *
 * Waiting is local: a process's waiters retry when any instance releases a slot (pub/sub) and at least
 * every 250 ms (expired leases announce nothing).
 */
export class RedisGeminiQuota implements GeminiQuota {
  private readonly logger = new Logger('GeminiQuota');
  private readonly holdersKey: string;
  private readonly startsKey: string;
  private readonly pauseKey: string;
  private readonly releasedChannel: string;
  private readonly waiters = new Set<Waiter>();
  private held = 0;
  private readonly scripts: QuotaCommands;
  /** Renewal timers of the leases this process holds (stopped on close). */
  private readonly renewals = new Set<NodeJS.Timeout>();
  private readonly onMessage = (channel: string) => {
    if (channel === this.releasedChannel) for (const w of [...this.waiters]) w.wake();
  };

  constructor(
    private readonly redis: RedisConnections,
    private readonly limits: QuotaLimits,
    private readonly leaseMs: number = LEASE_MS,
  ) {
    this.holdersKey = redis.key('gemini', 'holders');
    this.startsKey = redis.key('gemini', 'starts');
    this.pauseKey = redis.key('gemini', 'paused-until');
    this.releasedChannel = redis.key('gemini', 'released');
    const define = (name: keyof QuotaCommands, numberOfKeys: number, lua: string) => redis.command.defineCommand(name, { numberOfKeys, lua });
    define('hisQuotaAcquire', 2, ACQUIRE);
    define('hisQuotaRenew', 2, RENEW);
    define('hisQuotaRelease', 2, RELEASE);
    define('hisQuotaBeforeRequest', 2, BEFORE_REQUEST);
    define('hisQuotaPause', 1, PAUSE);
    this.scripts = redis.command as unknown as QuotaCommands;
    redis.subscriber.on('message', this.onMessage);
    void redis.subscriber.subscribe(this.releasedChannel).catch((e: unknown) => this.logger.warn(`Could not subscribe: ${String(e)}`));
  }

  get inFlight(): number {
    return this.held;
  }

  get waiting(): number {
    return this.waiters.size;
  }

  get capacity(): number {
    return this.limits.maxConcurrency;
  }

  async acquire(client: string | undefined, signal?: AbortSignal): Promise<() => void> {
    const lease = randomUUID();
    const clientKey = client === undefined ? '' : this.redis.key('gemini', 'client', client);
    const keys = [this.holdersKey, clientKey];
    const { maxConcurrency, perClient } = this.limits;
    for (;;) {
      signal?.throwIfAborted();
      const taken = await this.scripts.hisQuotaAcquire(...keys, lease, maxConcurrency, perClient, this.leaseMs);
      if (taken === 1) break;
      await this.waitForRelease(signal);
    }
    this.held++;
    const renew = setInterval(() => {
      this.scripts.hisQuotaRenew(...keys, lease, this.leaseMs).then(
        (still) => still === 0 && this.logger.warn(`A Gemini slot lease expired while its call ran (event loop or Redis stalled for ${this.leaseMs} ms)`),
        (e: unknown) => this.logger.warn(`Could not renew a Gemini slot lease: ${String(e)}`),
      );
    }, this.leaseMs / 3);
    renew.unref();
    this.renewals.add(renew);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      clearInterval(renew);
      this.renewals.delete(renew);
      this.held--;
      // If this fails (Redis down), the lease expires by itself within the lease time.
      this.scripts.hisQuotaRelease(...keys, lease, this.releasedChannel).catch((e: unknown) => this.logger.warn(`Could not release a Gemini slot: ${String(e)}`));
    };
  }

  async beforeRequest(signal?: AbortSignal): Promise<number> {
    let waited = 0;
    for (;;) {
      signal?.throwIfAborted();
      const wait = Number(await this.scripts.hisQuotaBeforeRequest(this.startsKey, this.pauseKey, this.limits.ratePerMinute, randomUUID()));
      if (wait <= 0) return waited;
      await sleep(wait, signal);
      waited += wait;
    }
  }

  async pause(ms: number): Promise<void> {
    await this.scripts.hisQuotaPause(this.pauseKey, Math.max(1, Math.round(ms)));
  }

  async close(): Promise<void> {
    // Leases still held expire by themselves once no longer renewed.
    for (const timer of this.renewals) clearInterval(timer);
    this.renewals.clear();
    this.redis.subscriber.off('message', this.onMessage);
    for (const w of [...this.waiters]) w.wake();
    await this.redis.subscriber.unsubscribe(this.releasedChannel).catch(() => undefined);
  }

  /** Until a release is announced, POLL_MS passes, or `signal` aborts (then it rejects). */
  private waitForRelease(signal?: AbortSignal): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const done = () => {
        clearTimeout(timer);
        this.waiters.delete(waiter);
        signal?.removeEventListener('abort', onAbort);
      };
      const waiter: Waiter = {
        wake: () => {
          done();
          resolve();
        },
      };
      const onAbort = () => {
        done();
        reject(signal!.reason);
      };
      // Jittered, so the waiters of many instances do not retry in lockstep.
      const timer = setTimeout(waiter.wake, POLL_MS / 2 + Math.random() * POLL_MS);
      this.waiters.add(waiter);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }
}
