interface Waiter {
  key: string | undefined;
  grant: (release: () => void) => void;
}

/**
 * A counting semaphore with a fair share per key. At most `capacity` slots are held at once, and at
 * most `perKeyCapacity` of them by callers with the same key (a client, say), so one key holding its
 * share (with calls that hang, for instance) can never take the slots other keys need. Waiters are
 * served in arrival order among those whose key is below its share (callers without a key have no
 * share of their own, only the capacity bounds them); a waiter whose signal aborts
 * leaves the queue (its promise rejects with the signal's reason) without taking a slot.
 * With `perKeyCapacity` = `capacity` (the default) it is a plain FIFO semaphore.
 */
export class Semaphore {
  private used = 0;
  private readonly queue: Waiter[] = [];
  private readonly heldByKey = new Map<string, number>();

  constructor(
    readonly capacity: number,
    readonly perKeyCapacity: number = capacity,
  ) {
    if (!Number.isInteger(capacity) || capacity < 1) throw new RangeError(`Semaphore capacity must be a positive integer, got ${capacity}`);
    if (!Number.isInteger(perKeyCapacity) || perKeyCapacity < 1 || perKeyCapacity > capacity) {
      throw new RangeError(`Per-key capacity must be an integer in 1..${capacity}, got ${perKeyCapacity}`);
    }
  }

  /** Slots held right now. */
  get inFlight(): number {
    return this.used;
  }

  /** Callers queued for a slot. */
  get waiting(): number {
    return this.queue.length;
  }

  /** Slots held right now by callers with `key`. */
  heldBy(key: string): number {
    return this.heldByKey.get(key) ?? 0;
  }

  acquire(signal?: AbortSignal, key?: string): Promise<() => void> {
    if (signal?.aborted) return Promise.reject(signal.reason);
    // Every queued waiter is blocked (the pool is full, or its key is at its share: grantWaiting runs
    // on every release), so a caller that can be served now passes no one who could have been.
    if (this.used < this.capacity && this.canTake(key)) return Promise.resolve(this.take(key));
    return new Promise((resolve, reject) => {
      const onAbort = () => {
        const index = this.queue.indexOf(waiter);
        if (index >= 0) this.queue.splice(index, 1);
        reject(signal?.reason);
      };
      const waiter: Waiter = {
        key,
        grant: (release) => {
          signal?.removeEventListener('abort', onAbort);
          resolve(release);
        },
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.queue.push(waiter);
    });
  }

  private canTake(key: string | undefined): boolean {
    return key === undefined || this.heldBy(key) < this.perKeyCapacity;
  }

  private take(key: string | undefined): () => void {
    this.used++;
    if (key !== undefined) this.heldByKey.set(key, this.heldBy(key) + 1);
    let released = false;
    // A release function that frees its slot once, however often it is called.
    return () => {
      if (released) return;
      released = true;
      this.used--;
      if (key !== undefined) {
        const held = this.heldBy(key) - 1;
        if (held === 0) this.heldByKey.delete(key);
        else this.heldByKey.set(key, held);
      }
      this.grantWaiting();
    };
  }

  /** Hands free slots to the oldest waiters whose key is below its share. */
  private grantWaiting(): void {
    for (let i = 0; i < this.queue.length && this.used < this.capacity; ) {
      const waiter = this.queue[i];
      if (!this.canTake(waiter.key)) {
        i++;
        continue;
      }
      this.queue.splice(i, 1);
      waiter.grant(this.take(waiter.key));
    }
  }
}
