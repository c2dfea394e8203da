/**
 * Admission by bytes: uploads reserve what they declare (Content-Length) until their response is
 * sent, and a reservation that would take the total past `maxBytes` is refused, except when nothing
 * else is in flight (a bound below one upload must not refuse every upload forever). No I/O, no Nest:
 * the policy alone.
 */
export class UploadBudget {
  private bytes = 0;
  private count = 0;
  /** Exponentially weighted mean time a reservation is held (ms), for Retry-After hints. */
  private meanHoldMs = 1000;

  constructor(readonly maxBytes: number) {}

  /** Reserves `bytes`: the function that gives them back (idempotent), or null when there is no room. */
  reserve(bytes: number): (() => void) | null {
    if (this.count > 0 && this.bytes + bytes > this.maxBytes) return null;
    this.bytes += bytes;
    this.count++;
    const taken = performance.now();
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.bytes -= bytes;
      this.count--;
      this.meanHoldMs += 0.1 * (performance.now() - taken - this.meanHoldMs);
    };
  }

  /** Reserved bytes and reservations right now. */
  stats(): { bytes: number; uploads: number } {
    return { bytes: this.bytes, uploads: this.count };
  }

  /** Seconds after which a refused upload may find room: about how long one is held, 1..60. */
  retryAfterSeconds(): number {
    return Math.min(60, Math.max(1, Math.ceil(this.meanHoldMs / 1000)));
  }
}
