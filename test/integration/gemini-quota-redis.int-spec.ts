import { randomUUID } from 'node:crypto';
import { InProcessGeminiQuota, type GeminiQuota } from '../../src/gemini/gemini-quota';
import { RedisGeminiQuota } from '../../src/gemini/redis-gemini-quota';
import { RedisConnections } from '../../src/redis/redis.connections';

const REDIS_URL = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';
const flush = () => new Promise((r) => setTimeout(r, 50));

/** Whether `promise` has settled yet (without waiting for it). */
async function settled(promise: Promise<unknown>): Promise<boolean> {
  let done = false;
  void promise.then(
    () => (done = true),
    () => (done = true),
  );
  await flush();
  return done;
}

/**
 * The global Gemini quota through a real Redis: three "instances" (each its own connections and
 * quota object, as three processes would have) share one prefix.
 */
describe('RedisGeminiQuota (real Redis)', () => {
  let prefix: string;
  let connections: RedisConnections[];
  let quotas: RedisGeminiQuota[];

  const instances = (n: number, limits: { maxConcurrency: number; perClient: number; ratePerMinute: number }, leaseMs?: number) => {
    for (let i = 0; i < n; i++) {
      const c = new RedisConnections(REDIS_URL, prefix);
      connections.push(c);
      quotas.push(new RedisGeminiQuota(c, limits, leaseMs));
    }
    return quotas;
  };

  beforeEach(() => {
    prefix = `his-test-${randomUUID()}`;
    connections = [];
    quotas = [];
  });

  afterEach(async () => {
    for (const q of quotas) await q.close();
    for (const c of connections) await c.close();
    const cleanup = new RedisConnections(REDIS_URL, prefix);
    const keys = await cleanup.command.keys(`${prefix}:*`);
    if (keys.length) await cleanup.command.del(...keys);
    await cleanup.close();
  });

  it('holds at most maxConcurrency slots over all instances, and a release lets a waiter of any instance in', async () => {
    const [a, b, c] = instances(3, { maxConcurrency: 2, perClient: 2, ratePerMinute: 0 });
    const r1 = await a.acquire(undefined);
    const r2 = await b.acquire(undefined);
    const third = c.acquire(undefined);
    const fourth = a.acquire(undefined);
    expect(await settled(third)).toBe(false);
    expect(await settled(fourth)).toBe(false);
    expect([a.inFlight, b.inFlight, c.inFlight, c.waiting]).toEqual([1, 1, 0, 1]);
    r1();
    // Exactly one of the two waiters gets the freed slot.
    const first = await Promise.race([third.then(() => 'third'), fourth.then(() => 'fourth')]);
    await flush();
    expect([await settled(third), await settled(fourth)].filter(Boolean)).toHaveLength(1);
    r2();
    const releases = await Promise.all([third, fourth]);
    expect(['third', 'fourth']).toContain(first);
    for (const release of releases) release();
  });

  it('many concurrent acquirers on three instances never exceed the global limit', async () => {
    const all = instances(3, { maxConcurrency: 3, perClient: 3, ratePerMinute: 0 });
    let inFlight = 0;
    let max = 0;
    await Promise.all(
      Array.from({ length: 30 }, async (_, i) => {
        const release = await all[i % 3].acquire(undefined);
        inFlight++;
        max = Math.max(max, inFlight);
        await new Promise((r) => setTimeout(r, 5 + (i % 4) * 5));
        inFlight--;
        release();
      }),
    );
    expect(max).toBe(3);
  });

  it("one client's share is global too: its third call waits while another client's call is served", async () => {
    const [a, b] = instances(2, { maxConcurrency: 4, perClient: 2, ratePerMinute: 0 });
    const held = [await a.acquire('key:alice'), await b.acquire('key:alice')];
    const aliceThird = a.acquire('key:alice');
    expect(await settled(aliceThird)).toBe(false);
    const bob = await b.acquire('key:bob');
    held[0]();
    (await aliceThird)();
    held[1]();
    bob();
  });

  it('a lease that is not renewed (its process died) expires and frees the slot', async () => {
    const [a, b] = instances(2, { maxConcurrency: 1, perClient: 1, ratePerMinute: 0 }, 600);
    await a.acquire(undefined);
    // Simulate the holder's death: stop its renewals and close its connections, never releasing.
    await a.close();
    await connections[0].close();
    const release = await b.acquire(undefined);
    release();
  });

  it('an aborted waiter leaves without taking a slot', async () => {
    const [a] = instances(1, { maxConcurrency: 1, perClient: 1, ratePerMinute: 0 });
    const release = await a.acquire(undefined);
    const controller = new AbortController();
    const waiting = a.acquire(undefined, controller.signal);
    controller.abort(new Error('canceled'));
    await expect(waiting).rejects.toThrow('canceled');
    release();
    (await a.acquire(undefined))();
  });

  it('requests per minute are counted over all instances; a 429 pause holds every instance', async () => {
    const [a, b] = instances(2, { maxConcurrency: 10, perClient: 10, ratePerMinute: 3 });
    expect(await a.beforeRequest()).toBe(0);
    expect(await b.beforeRequest()).toBe(0);
    expect(await a.beforeRequest()).toBe(0);
    const controller = new AbortController();
    const fourth = b.beforeRequest(controller.signal);
    expect(await settled(fourth)).toBe(false);
    controller.abort(new Error('gave up'));
    await expect(fourth).rejects.toThrow('gave up');

    const [c, d] = instances(2, { maxConcurrency: 10, perClient: 10, ratePerMinute: 0 });
    await c.pause(60_000);
    const held = new AbortController();
    const blocked = d.beforeRequest(held.signal);
    expect(await settled(blocked)).toBe(false);
    held.abort(new Error('stop'));
    await expect(blocked).rejects.toThrow('stop');
  });

  it('a short pause ends by itself, and the request then starts', async () => {
    const [a, b] = instances(2, { maxConcurrency: 1, perClient: 1, ratePerMinute: 0 });
    await a.pause(200);
    expect(await b.beforeRequest()).toBeGreaterThan(0);
    expect(await b.beforeRequest()).toBe(0);
  });
});

describe('InProcessGeminiQuota', () => {
  it('pauses and limits requests per minute on an injected clock', async () => {
    let now = 1_000_000;
    const quota: GeminiQuota = new InProcessGeminiQuota({ maxConcurrency: 2, perClient: 1, ratePerMinute: 2 }, () => now);
    expect(await quota.beforeRequest()).toBe(0);
    expect(await quota.beforeRequest()).toBe(0);
    const controller = new AbortController();
    const third = quota.beforeRequest(controller.signal);
    expect(await settled(third)).toBe(false);
    controller.abort(new Error('x'));
    await expect(third).rejects.toThrow('x');
    now += 60_000;
    expect(await quota.beforeRequest()).toBe(0);
    await quota.pause(30_000);
    const paused = new AbortController();
    const blocked = quota.beforeRequest(paused.signal);
    expect(await settled(blocked)).toBe(false);
    paused.abort(new Error('y'));
    await expect(blocked).rejects.toThrow('y');
  });
});
