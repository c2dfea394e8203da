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
