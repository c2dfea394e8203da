import { Semaphore } from './semaphore';

const flush = () => new Promise((resolve) => setImmediate(resolve));

describe('Semaphore', () => {
  it('grants up to capacity at once and queues the rest', async () => {
    const sem = new Semaphore(2);
    const a = await sem.acquire();
    await sem.acquire();
    let thirdGranted = false;
    const third = sem.acquire().then((release) => {
      thirdGranted = true;
      return release;
    });
    await flush();
    expect({ inFlight: sem.inFlight, waiting: sem.waiting, thirdGranted }).toEqual({ inFlight: 2, waiting: 1, thirdGranted: false });

    a();
    await third;
    expect({ inFlight: sem.inFlight, waiting: sem.waiting, thirdGranted }).toEqual({ inFlight: 2, waiting: 0, thirdGranted: true });
  });

  it('serves waiters in arrival order', async () => {
    const sem = new Semaphore(1);
    const first = await sem.acquire();
    const order: number[] = [];
    const waiters = [1, 2, 3].map((n) =>
      sem.acquire().then((release) => {
        order.push(n);
        release();
      }),
    );
    first();
    await Promise.all(waiters);
    expect(order).toEqual([1, 2, 3]);
    expect(sem.inFlight).toBe(0);
  });

  it('releasing twice frees only one slot', async () => {
    const sem = new Semaphore(1);
    const release = await sem.acquire();
    release();
    const again = await sem.acquire();
    release(); // stale: must not free the slot now held by `again`
    expect(sem.inFlight).toBe(1);
    again();
    expect(sem.inFlight).toBe(0);
  });

  it('an aborted waiter leaves the queue with the signal reason and takes no slot', async () => {
    const sem = new Semaphore(1);
    const holder = await sem.acquire();
    const controller = new AbortController();
    const aborted = sem.acquire(controller.signal);
    const next = sem.acquire();
    expect(sem.waiting).toBe(2);

    const reason = new Error('caller gave up');
    controller.abort(reason);
    await expect(aborted).rejects.toBe(reason);
    expect(sem.waiting).toBe(1);

    holder();
    const release = await next;
    expect(sem.inFlight).toBe(1);
    release();
    expect(sem.inFlight).toBe(0);
  });

  it('rejects at once when the signal is already aborted, even with free slots', async () => {
    const sem = new Semaphore(3);
    await expect(sem.acquire(AbortSignal.abort(new Error('late')))).rejects.toThrow('late');
    expect(sem.inFlight).toBe(0);
  });

  it('a grant after abort-listener removal is not undone by a later abort', async () => {
    const sem = new Semaphore(1);
    const holder = await sem.acquire();
    const controller = new AbortController();
    const pending = sem.acquire(controller.signal);
    holder();
    const release = await pending;
    controller.abort();
    expect(sem.inFlight).toBe(1);
    release();
    expect(sem.inFlight).toBe(0);
  });

  it('refuses a capacity below 1', () => {
    expect(() => new Semaphore(0)).toThrow(RangeError);
  });
});

describe('Semaphore with a per-key share', () => {
  it('never lets one key hold more than its share, and serves other keys meanwhile', async () => {
    const sem = new Semaphore(4, 2);
    const a1 = await sem.acquire(undefined, 'a');
    await sem.acquire(undefined, 'a');
    let a3Granted = false;
    const a3 = sem.acquire(undefined, 'a').then((release) => {
      a3Granted = true;
      return release;
    });
    // 'b' arrives after a3 but a3 is at its key's share: b passes it and takes a free slot.
    const b1 = await sem.acquire(undefined, 'b');
    await flush();
    expect({ inFlight: sem.inFlight, waiting: sem.waiting, a3Granted, a: sem.heldBy('a'), b: sem.heldBy('b') }).toEqual({
      inFlight: 3,
      waiting: 1,
      a3Granted: false,
      a: 2,
      b: 1,
    });
    // Freeing one of b's slots does not help a; freeing one of a's does.
    b1();
    await flush();
    expect(a3Granted).toBe(false);
    a1();
    await a3;
    expect({ inFlight: sem.inFlight, waiting: sem.waiting, a: sem.heldBy('a'), b: sem.heldBy('b') }).toEqual({ inFlight: 2, waiting: 0, a: 2, b: 0 });
  });

  it('serves eligible waiters in arrival order when the pool is full', async () => {
    const sem = new Semaphore(2, 1);
    const a = await sem.acquire(undefined, 'a');
    const b = await sem.acquire(undefined, 'b');
    const order: string[] = [];
    const waiters = ['a', 'c', 'b', 'd'].map((key) =>
      sem.acquire(undefined, key).then((release) => {
        order.push(key);
        return release;
      }),
    );
    // One slot frees (a's): the oldest waiter whose key is free is 'a' itself (its slot is gone).
    a();
    await flush();
    expect(order).toEqual(['a']);
    b();
    await flush();
    expect(order).toEqual(['a', 'c']);
    for (const release of await Promise.all(waiters.slice(0, 2))) release();
    await Promise.all(waiters);
    expect(order).toEqual(['a', 'c', 'b', 'd']);
  });

  it('a waiter that aborts leaves the queue without a slot, also when its key is at its share', async () => {
    const sem = new Semaphore(3, 1);
    const held = await sem.acquire(undefined, 'a');
    const controller = new AbortController();
    const blocked = sem.acquire(controller.signal, 'a');
    controller.abort(new Error('gone'));
    await expect(blocked).rejects.toThrow('gone');
    held();
    expect({ inFlight: sem.inFlight, waiting: sem.waiting, a: sem.heldBy('a') }).toEqual({ inFlight: 0, waiting: 0, a: 0 });
  });

  it('rejects a share above the capacity or below one', () => {
    expect(() => new Semaphore(2, 3)).toThrow(RangeError);
    expect(() => new Semaphore(2, 0)).toThrow(RangeError);
  });
});

describe('Semaphore: callers without a key', () => {
  it('are bounded by the capacity only, beside keyed callers at their share', async () => {
    const sem = new Semaphore(3, 1);
    await sem.acquire(undefined, 'a');
    await sem.acquire();
    await sem.acquire();
    expect(sem.inFlight).toBe(3);
    let granted = false;
    void sem.acquire().then(() => (granted = true));
    await flush();
    expect({ granted, waiting: sem.waiting }).toEqual({ granted: false, waiting: 1 });
  });
});
