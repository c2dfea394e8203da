import { EventEmitter } from 'node:events';
import { Generation, isFinal } from '../common/generation.model';

/**
 * Pub/sub of generation changes: whoever changes a generation publishes it; Server-Sent Events and
 * `Prefer: wait` subscribe. Two adapters: in-process (one instance) and Redis pub/sub (any instance
 * hears every change, wherever its worker runs). Subscribers read the record first and then follow
 * the events, so a missed event (Redis briefly away) costs nothing but a later update.
 *
 * This class is the in-process adapter and the base of the others: `subscribe`/`waitForFinal` serve
 * local listeners, adapters only decide how a publish reaches every process's `deliver`.
 */
export class GenerationEvents {
  private readonly emitter = new EventEmitter();

  constructor() {
    // Many clients may watch the same generation; each listener is removed on unsubscribe.
    this.emitter.setMaxListeners(0);
  }

  publish(generation: Generation): void {
    this.deliver(generation);
  }

  /** Hands a change to this process's listeners. */
  protected deliver(generation: Generation): void {
    this.emitter.emit(generation.id, generation);
  }

  /** Calls `listener` for every change of `id` until the returned function is called. */
  subscribe(id: string, listener: (generation: Generation) => void): () => void {
    this.emitter.on(id, listener);
    return () => this.emitter.off(id, listener);
  }

  /**
   * Resolves with the generation once it is final, or with the last state seen after `timeoutMs`
   * (or `null` when nothing changed). `readCurrent` is called just after subscribing.
   */
  async waitForFinal(id: string, timeoutMs: number, readCurrent: () => Promise<Generation | null>): Promise<Generation | null> {
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

  async close(): Promise<void> {}
}
