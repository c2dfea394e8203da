import { HttpStatus, Injectable } from '@nestjs/common';
import type { Request, Response } from 'express';
import type { Principal } from '../common/principal';
import { AppError } from '../common/app-error';
import { Generation, isFinal } from '../common/generation.model';
import { AppConfig } from '../config/app-config';
import { GenerationEvents } from '../pipeline/generation-events';
import { AppMetrics } from '../telemetry/app-metrics';
import { GenerationDto } from './dto/generation.dto';

export const SSE_HEARTBEAT_MS = 15_000;
/** Streams end when their generation does: a slot is usually free again within seconds. */
const RETRY_AFTER_S = 5;

const STATUS_RANK = { queued: 0, running: 1, succeeded: 2, failed: 2, canceled: 2 } as const;
const STAGE_RANK = { queued: 0, gemini: 1, upload: 2, palette: 3, done: 4 } as const;
/** A number that only grows as a generation moves forward. */
const progress = (g: Generation) => STATUS_RANK[g.status] * 10 + STAGE_RANK[g.stage];

/**
 * Server-Sent Events of one generation (`GET /api/v1/generations/{id}/events`): the current state,
 * then every status/stage change, a comment line every 15 s so proxies keep the connection, and the
 * end after the final state. Each open stream holds a socket (a file descriptor) for as long as its
 * generation runs, so their number is capped per client (per API key when keys are configured,
 * else per client address) and in total (`SSE_MAX_STREAMS_PER_CLIENT`, `SSE_MAX_STREAMS`); past a
 * cap → `429 TOO_MANY_STREAMS` + `Retry-After`. A slot is freed when the stream ends, whoever ends it.
 */
@Injectable()
export class GenerationStreamService {
  private readonly perClient = new Map<string, number>();
  private total = 0;

  constructor(
    private readonly events: GenerationEvents,
    private readonly config: AppConfig,
    metrics: AppMetrics,
  ) {
    metrics.gauge('sse.streams.open', 'Open Server-Sent Event streams', () => this.total, '{stream}');
  }

  /** Open streams, in total or of one principal's client (tests, diagnostics). */
  openStreams(client?: string): number {
    return client !== undefined ? (this.perClient.get(client) ?? 0) : this.total;
  }

  /**
   * Streams `id` to `res`. `lookup` reads the generation (and throws, say, a 404 when the caller may
   * not see it); it runs after the subscription, so no change between the read and the
   * subscription is lost. Resolves once the stream is set up; errors before that are thrown (the
   * exception filter answers them), and the slot is given back.
   */
  async open(id: string, principal: Principal, lookup: () => Promise<Generation>, req: Request, res: Response): Promise<void> {
    // Counted by the principal's client: the key's name, or the address without keys (a header is
    // not trusted then: anyone could send a new one per stream).
    const release = this.acquire(principal.client);
    const queued: Generation[] = [];
    let send: ((g: Generation) => void) | undefined;
    const unsubscribe = this.events.subscribe(id, (g) => (send ? send(g) : queued.push(g)));
    let heartbeat: NodeJS.Timeout | undefined;
    let closed = false;
    const close = () => {
      if (closed) return;
      closed = true;
      unsubscribe();
      clearInterval(heartbeat);
      release();
      if (res.headersSent && !res.writableEnded) res.end();
    };
    try {
      const current = await lookup();
      // The client may have left during the lookup: then there is nothing to set up.
      if (res.destroyed) return close();
      res.on('close', close);
      res.status(HttpStatus.OK);
      res.setHeader('Content-Type', 'text/event-stream; charset=utf-8');
      res.setHeader('Cache-Control', 'no-cache, no-transform');
      res.setHeader('Connection', 'keep-alive');
      res.setHeader('X-Accel-Buffering', 'no');
      res.flushHeaders();
      let lastSent = '';
      send = (g: Generation) => {
        if (closed || res.writableEnded) return;
        const data = JSON.stringify(GenerationDto.from(g));
        if (data === lastSent) return;
        lastSent = data;
        res.write(`event: generation\nid: ${g.status}:${g.stage}\ndata: ${data}\n\n`);
        if (isFinal(g.status)) close();
      };
      send(current);
      // Changes seen while reading: only those ahead of what was read are news.
      for (const g of queued.splice(0)) if (progress(g) > progress(current)) send(g);
      if (!closed) heartbeat = setInterval(() => res.write(': keep-alive\n\n'), SSE_HEARTBEAT_MS);
    } catch (error) {
      close();
      throw error;
    }
  }

  /** Takes a slot for `client` or throws 429; the returned function gives it back (once). */
  private acquire(client: string): () => void {
    const { maxPerClient, maxTotal } = this.config.eventStreams;
    const own = this.perClient.get(client) ?? 0;
    if (own >= maxPerClient) {
      throw tooMany(`This client already has ${own} open event streams (at most ${maxPerClient}); close one or retry later`);
    }
    if (this.total >= maxTotal) throw tooMany(`The service has ${this.total} open event streams (at most ${maxTotal}); retry later`);
    this.perClient.set(client, own + 1);
    this.total++;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.total--;
      const left = (this.perClient.get(client) ?? 1) - 1;
      if (left > 0) this.perClient.set(client, left);
      else this.perClient.delete(client);
    };
  }
}

function tooMany(message: string): AppError {
  return new AppError(HttpStatus.TOO_MANY_REQUESTS, 'TOO_MANY_STREAMS', message, { 'Retry-After': String(RETRY_AFTER_S) });
}
