import { randomUUID } from 'node:crypto';
import { Logger } from '@nestjs/common';
import type { Generation } from '../common/generation.model';
import type { RedisConnections } from '../redis/redis.connections';
import { GenerationEvents } from './generation-events';
import { parseGenerationJson } from './generation-json';

/**
 * Generation changes over Redis pub/sub: a publish reaches this process's listeners at once and every
 * other instance through one channel, so an SSE stream or `Prefer: wait` on instance A follows a job
 * that a worker on instance B runs. A message from this process is not delivered twice. If Redis is
 * away, remote listeners miss changes; they read the record on (re)subscribing, and the final state
 * is also in the database.
 */
export class RedisGenerationEvents extends GenerationEvents {
  private readonly logger = new Logger('GenerationEvents');
  private readonly channel: string;
  private readonly origin = randomUUID();
  private readonly onMessage = (channel: string, message: string) => {
    if (channel !== this.channel) return;
    try {
      const { origin, generation } = JSON.parse(message) as { origin: string; generation: unknown };
      if (origin !== this.origin) this.deliver(parseGenerationJson(generation));
    } catch (error) {
      this.logger.warn(`Ignoring a malformed generation event: ${String(error)}`);
    }
  };

  constructor(private readonly redis: RedisConnections) {
    super();
    this.channel = redis.key('events', 'generations');
    redis.subscriber.on('message', this.onMessage);
    void redis.subscriber.subscribe(this.channel).catch((e: unknown) => this.logger.warn(`Could not subscribe to generation events: ${String(e)}`));
  }

  override publish(generation: Generation): void {
    this.deliver(generation);
    this.redis.command
      .publish(this.channel, JSON.stringify({ origin: this.origin, generation }))
      .catch((e: unknown) => this.logger.warn(`Could not publish a change of generation ${generation.id}: ${String(e)}`));
  }

  override async close(): Promise<void> {
    this.redis.subscriber.off('message', this.onMessage);
    await this.redis.subscriber.unsubscribe(this.channel).catch(() => undefined);
  }
}
