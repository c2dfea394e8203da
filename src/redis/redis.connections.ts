import { Logger } from '@nestjs/common';
import type { RedisOptions as BullMqRedisOptions } from 'bullmq';
import { Redis, RedisOptions } from 'ioredis';

/** How long a readiness ping may take before Redis counts as down. */
const PING_TIMEOUT_MS = 1_000;
/** Backstop for one command (a Redis that accepts connections but does not answer). */
const COMMAND_TIMEOUT_MS = 5_000;

/**
 * The service's connections to Redis (distributed mode only): one for commands and publishing, one
 * held in subscriber mode for pub/sub, and the options BullMQ builds its own from. Every key and
 * channel the service uses starts with `prefix`, so several deployments or test runs share one Redis.
 *
 * Commands fail fast while Redis is unreachable (after one reconnect attempt, or 5 s at most): a caller
 * gets an error it can answer with 503 instead of a request that hangs until Redis returns. ioredis
 * reconnects by itself (and re-subscribes the subscriber), so the service recovers when Redis does.
 */
export class RedisConnections {
  private readonly logger = new Logger('Redis');
  readonly command: Redis;
  readonly subscriber: Redis;

  constructor(
    readonly url: string,
    readonly prefix: string,
  ) {
    this.command = this.connect('command', { maxRetriesPerRequest: 1, commandTimeout: COMMAND_TIMEOUT_MS });
    // Subscriptions made while disconnected are queued and sent on connect.
    this.subscriber = this.connect('subscriber', { enableOfflineQueue: true, maxRetriesPerRequest: null });
  }

  /** Options for BullMQ's own connections (it needs `maxRetriesPerRequest: null` for blocking calls). */
  bullmqConnection(): BullMqRedisOptions {
    return { url: this.url, maxRetriesPerRequest: null, enableOfflineQueue: true, retryStrategy: reconnectDelay };
  }

  /** A key under the service's prefix: `key('gemini', 'holders')` → `<prefix>:gemini:holders`. */
  key(...parts: string[]): string {
    return [this.prefix, ...parts].join(':');
  }

  /** Round trip for readiness; rejects when Redis does not answer within a second. */
  async ping(): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        this.command.ping(),
        new Promise((_, reject) => (timer = setTimeout(() => reject(new Error(`no answer within ${PING_TIMEOUT_MS} ms`)), PING_TIMEOUT_MS))),
      ]);
    } finally {
      clearTimeout(timer);
    }
  }

  async close(): Promise<void> {
    await Promise.allSettled([this.command.quit(), this.subscriber.quit()]);
    // Only a connection QUIT did not end (Redis unreachable) still needs cutting. On one that already
    // closed, disconnect() arms a 2 s timer that waits for a 'close' event which already happened:
    // it held the process (a Jest worker, the service at shutdown) open for those 2 s.
    for (const client of [this.command, this.subscriber]) if (client.status !== 'end') client.disconnect();
  }

  private connect(role: string, options: RedisOptions): Redis {
    const client = new Redis(this.url, { ...options, connectionName: `his-${role}`, retryStrategy: reconnectDelay, lazyConnect: false });
    let down = false;
    // Without a listener ioredis reports every failed reconnect as an unhandled 'error' event.
    client.on('error', (error: Error) => {
      if (!down) this.logger.warn(`Redis ${role} connection: ${error.message}`);
      down = true;
    });
    client.on('ready', () => {
      if (down) this.logger.log(`Redis ${role} connection is back`);
      down = false;
    });
    return client;
  }
}

/** Reconnect quickly at first, then every 2 s at most, forever. */
function reconnectDelay(times: number): number {
  return Math.min(100 * 2 ** Math.min(times, 5), 2_000);
}
