interface Waiter {
  grant: (release: () => void) => void;
}

/**
 * A FIFO counting semaphore. `acquire()` resolves with a release function once a slot is free;
 * waiters are served in arrival order, and a waiter whose signal aborts leaves the queue (its
 * promise rejects with the signal's reason) without taking a slot.
 */
export class Semaphore {
  private used = 0;
  private readonly queue: Waiter[] = [];

  constructor(readonly capacity: number) {
    if (!Number.isInteger(capacity) || capacity < 1) throw new RangeError(`Semaphore capacity must be a positive integer, got ${capacity}`);
  }

  /** Slots held right now. */
  get inFlight(): number {
    return this.used;
  }

  /** Callers queued for a slot. */
  get waiting(): number {
    return this.queue.length;
  }

  acquire(signal?: AbortSignal): Promise<() => void> {
    if (signal?.aborted) return Promise.reject(signal.reason);
    if (this.used < this.capacity && this.queue.length === 0) {
      this.used++;
      return Promise.resolve(this.releaser());
    }
    return new Promise((resolve, reject) => {
      const onAbort = () => {
        const index = this.queue.indexOf(waiter);
        if (index >= 0) this.queue.splice(index, 1);
        reject(signal?.reason);
      };
      const waiter: Waiter = {
        grant: (release) => {
          signal?.removeEventListener('abort', onAbort);
          resolve(release);
        },
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.queue.push(waiter);
    });
  }

  /** A release function that frees its slot once, however often it is called. */
  private releaser(): () => void {
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const next = this.queue.shift();
      // The slot passes straight to the next waiter, so `used` stays the same.
      if (next) next.grant(this.releaser());
      else this.used--;
    };
  }
}
