import { connect } from 'node:net';
import { Redis } from 'ioredis';
import { deleteKeys, startRedisServer, TEST_REDIS_URL, uniquePrefix } from '../support/redis';

async function withRedis<T>(url: string, fn: (redis: Redis) => Promise<T>): Promise<T> {
  const redis = new Redis(url, { lazyConnect: true });
  try {
    await redis.connect();
    return await fn(redis);
  } finally {
    redis.disconnect();
  }
}

/** Resolves when something accepts a TCP connection on the port, else rejects with the error. */
function tcpConnect(port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve();
    });
    socket.once('error', reject);
  });
}

describe('test/support/redis', () => {
  it('makes prefixes no other run uses, without ":"', () => {
    const a = uniquePrefix('queue');
    const b = uniquePrefix('queue');
    expect(a).not.toBe(b);
    expect(a).toMatch(new RegExp(`^his_queue_${process.pid}_[0-9a-f]{8}$`));
    expect(uniquePrefix('a:b c')).not.toMatch(/[: ]/);
  });

  it('deletes the keys of one prefix on the shared server and nothing else', async () => {
    const mine = uniquePrefix('mine');
    const other = uniquePrefix('other');
    await withRedis(TEST_REDIS_URL, async (redis) => {
      await redis.mset(`${mine}:a`, '1', `${mine}:b`, '2', `${other}:a`, '3');
      expect(await deleteKeys(mine)).toBe(2);
      expect(await redis.exists(`${mine}:a`, `${mine}:b`, `${other}:a`)).toBe(1);
      expect(await deleteKeys(other)).toBe(1);
    });
    await expect(deleteKeys('his')).rejects.toThrow(/short prefix/);
  });

  it('starts a private redis-server, stops it and starts it again empty on the same port', async () => {
    const server = await startRedisServer();
    try {
      expect(server.url).toBe(`redis://127.0.0.1:${server.port}`);
      await withRedis(server.url, async (redis) => {
        await redis.set('k', 'v');
        expect(await redis.get('k')).toBe('v');
      });

      await server.stop('SIGKILL');
      expect(server.running).toBe(false);
      await expect(tcpConnect(server.port)).rejects.toMatchObject({ code: 'ECONNREFUSED' });

      await server.start();
      expect(server.running).toBe(true);
      await withRedis(server.url, async (redis) => {
        expect(await redis.ping()).toBe('PONG');
        expect(await redis.get('k')).toBeNull();
      });
    } finally {
      await server.stop();
    }
    expect(server.running).toBe(false);
  });
});
