import { Injectable } from '@nestjs/common';
import { EventEmitter } from 'node:events';
import { Generation, isFinal } from '../common/generation.model';

/**
 * In-process pub/sub of generation changes: the pipeline publishes every status/stage change,
 * Server-Sent Events and `Prefer: wait` subscribe. One instance per process; a client that
 * reconnects gets the current state from the database first, so nothing here needs to survive a restart.
 */
@Injectable()
export class GenerationEvents {
  private readonly emitter = new EventEmitter();

  constructor() {
    // Many clients may watch the same generation; each listener is removed on unsubscribe.
    this.emitter.setMaxListeners(0);
  }

  publish(generation: Generation): void {
    this.emitter.emit(generation.id, generation);
  }

  /** Calls `listener` for every change of `id` until the returned function is called. */
  subscribe(id: string, listener: (generation: Generation) => void): () => void {
    this.emitter.on(id, listener);
    return () => this.emitter.off(id, listener);
  }

  /**
   * Resolves with the generation once it is final, or with the last state seen after `timeoutMs`
   * (or `null` when nothing changed). `current` is the state read just after subscribing.
   */
  async waitForFinal(
    id: string,
    timeoutMs: number,
    readCurrent: () => Promise<Generation | null>,
  ): Promise<Generation | null> {
    let last: Generation | null = null;
    let finish!: (g: Generation | null) => void;
    const done = new Promise<Generation | null>((resolve) => (finish = resolve));
    const unsubscribe = this.subscribe(id, (g) => {
      last = g;
      if (isFinal(g.status)) finish(g);
    });
    const timer = setTimeout(() => finish(last), timeoutMs);
    try {
      const current = await readCurrent();
      if (current) {
        last ??= current;
        if (isFinal(current.status)) return current;
      }
      return await done;
    } finally {
      clearTimeout(timer);
      unsubscribe();
    }
  }
}
