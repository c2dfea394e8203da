/**
 * The liveness prober of `npm run bench -- palette-liveness`, run as its own process (as a kubelet or
 * a load balancer would be): `GET /health/live` every `intervalMs` over one keep-alive connection.
 *
 * Open loop: each probe is due at a fixed time, and its latency is counted from that time, not
 * from when it could leave. A probe that finds the connection still busy with a slow one waits
 * for it (one socket, as a real prober keeps), and that wait is part of its latency: a stalled
 * service is not hidden by sending fewer probes while it stalls (coordinated omission).
 *
 * Driven over the IPC channel of `child_process.fork`: `{ type: 'start' }` begins (probes before it
 * warm the connection and are not recorded), `{ type: 'stop' }` ends and answers a ProbeReport.
 */
import { Agent, request } from 'node:http';
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';

export interface ProbeReport {
  /** Latency of each recorded probe, ms, from its due time to the end of its answer. */
  latenciesMs: number[];
  /** Probes that failed (not 200, a transport error, no answer within the timeout, or none by the end). */
  failures: number;
  /** Of those, probes still unanswered 2 s after the end (a backlog: the service fell behind the probe rate). */
  unansweredAtEnd: number;
  /** This process's own event-loop delay p99 and max, ms: when high, the prober itself was late. */
  ownEventLoopDelayP99Ms: number;
  ownEventLoopDelayMaxMs: number;
}

export type ProbeCommand = { type: 'start' } | { type: 'stop' };

const TIMEOUT_MS = 10_000;
const STOP_GRACE_MS = 2_000;

export function probe(url: string, intervalMs: number): { start(): void; stop(): Promise<ProbeReport> } {
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  const target = new URL(url);
  const delay = monitorEventLoopDelay({ resolution: 1 });
  let recording = false;
  let running = true;
  const latenciesMs: number[] = [];
  let failures = 0;
  let unanswered = 0;
  const outstanding = new Set<Promise<void>>();

  const once = (due: number, record: boolean): Promise<void> =>
    new Promise<void>((resolve) => {
      const done = (ok: boolean) => {
        if (record) {
          if (ok) latenciesMs.push(performance.now() - due);
          else failures++;
        }
        resolve();
      };
      const req = request({ agent, host: target.hostname, port: target.port, path: target.pathname, method: 'GET' }, (res) => {
        res.resume();
        res.on('end', () => done(res.statusCode === 200));
        res.on('error', () => done(false));
      });
      req.setTimeout(TIMEOUT_MS, () => req.destroy(new Error('timeout')));
      req.on('error', () => done(false));
      req.end();
    });

  let next = performance.now();
  const tick = () => {
    if (!running) return;
    const now = performance.now();
    // Every probe that fell due while this process was late is sent now, each with its own due time.
    while (next <= now) {
      const p = once(next, recording);
      outstanding.add(p);
      void p.finally(() => outstanding.delete(p));
      next += intervalMs;
    }
    setTimeout(tick, Math.max(0, next - performance.now()));
  };
  tick();

  return {
    start() {
      latenciesMs.length = 0;
      failures = 0;
      delay.reset();
      delay.enable();
      recording = true;
    },
    async stop() {
      running = false;
      // Probes still waiting for an answer after a grace period count as failures, not latencies: a
      // service that falls behind the probe rate builds a backlog on the one connection.
      const grace = new Promise((r) => setTimeout(r, STOP_GRACE_MS).unref());
      await Promise.race([Promise.all([...outstanding]), grace]);
      unanswered = outstanding.size;
      agent.destroy();
      await Promise.all([...outstanding]);
      delay.disable();
      return {
        latenciesMs,
        failures,
        unansweredAtEnd: unanswered,
        ownEventLoopDelayP99Ms: delay.percentile(99) / 1e6,
        ownEventLoopDelayMaxMs: delay.max / 1e6,
      };
    },
  };
}

if (require.main === module) {
  const [url, interval] = process.argv.slice(2);
  if (!url || !process.send) {
    console.error('usage (from the bench, with an IPC channel): liveness-probe.js <url of /health/live> [interval ms]');
    process.exit(2);
  }
  const prober = probe(url, Number(interval ?? 20));
  process.on('message', (command: ProbeCommand) => {
    if (command.type === 'start') prober.start();
    else if (command.type === 'stop') {
      void prober.stop().then((report) => process.send!(report, () => process.exit(0)));
    }
  });
}
