/**
 * Open-loop HTTP load: requests leave at their scheduled time whether or not earlier ones have
 * answered (a closed loop would slow down with the service and hide its latency), over keep-alive
 * connections with no per-host socket limit. Each answer is recorded per route with its status and
 * the contract's error `code`.
 */
import { Agent, request as httpRequest, type ClientRequest, type IncomingHttpHeaders } from 'node:http';
import { performance } from 'node:perf_hooks';
import { Samples, type LatencySummary } from './stats';

/** The routes the harness calls, named by their pattern (bounded, like the service's metric labels). */
export const ROUTES = {
  create: 'POST /api/v1/generations',
  createWait: 'POST /api/v1/generations (Prefer: wait=60)',
  status: 'GET /api/v1/generations/:id',
  history: 'GET /api/v1/generations',
  image: 'GET /api/v1/generations/:id/images/:index',
  palette: 'POST /api/v1/palettes',
  live: 'GET /health/live',
} as const;
export type RouteKey = keyof typeof ROUTES;

/**
 * The JSON API routes whose p99 must stay under the 50 ms budget ("non-generation routes").
 * Reported on their own instead: `createWait`, which holds the request until the generation
 * finishes (seconds, by design); image downloads, which stream 0.7–2 MB each (production serves
 * them from S3 with presigned URLs, `S3_PRESIGN=true`); and palette uploads, which decode a 1024²
 * image per request (a compute route).
 */
export const LIGHT_ROUTES: RouteKey[] = ['create', 'status', 'history', 'live'];

export interface HttpAnswer {
  status: number;
  headers: IncomingHttpHeaders;
  body: Buffer;
  ms: number;
}

/** Routes whose answer the harness reads (generation ids and states); others are drained unread. */
const BODY_ROUTES = new Set<RouteKey>(['create', 'createWait', 'status']);

/** Refuse to have more than this many requests outstanding: a runaway harness would measure itself. */
const MAX_OUTSTANDING = 6_000;

export class RouteRecorder {
  readonly latency = new Map<RouteKey, Samples>();
  /** route → "status code" (e.g. "429 QUEUE_FULL", "200") → count. */
  readonly outcomes = new Map<RouteKey, Map<string, number>>();
  /** Latencies of the light routes by second since the recorder started, for the per-second p99 charts. */
  readonly lightBySecond = new Map<number, number[]>();
  /** Every light-route request together: "p99 of the non-generation routes". */
  readonly light = new Samples();
  private readonly t0 = performance.now();

  record(route: RouteKey, ms: number, outcome: string, at = performance.now()): void {
    let samples = this.latency.get(route);
    if (!samples) this.latency.set(route, (samples = new Samples()));
    samples.add(ms);
    let counts = this.outcomes.get(route);
    if (!counts) this.outcomes.set(route, (counts = new Map()));
    counts.set(outcome, (counts.get(outcome) ?? 0) + 1);
    if (LIGHT_ROUTES.includes(route)) {
      this.light.add(ms);
      const second = Math.floor((at - this.t0) / 1000);
      const list = this.lightBySecond.get(second);
      if (list) list.push(ms);
      else this.lightBySecond.set(second, [ms]);
    }
  }

  summary(): Record<string, { latencyMs: LatencySummary; outcomes: Record<string, number> }> {
    const out: Record<string, { latencyMs: LatencySummary; outcomes: Record<string, number> }> = {};
    for (const [route, samples] of this.latency) {
      out[ROUTES[route]] = { latencyMs: samples.summary(), outcomes: Object.fromEntries(this.outcomes.get(route) ?? []) };
    }
    return out;
  }

  /** Requests answered with anything but 2xx/3xx, by route and "status code". */
  errors(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const [route, counts] of this.outcomes) {
      for (const [outcome, n] of counts) {
        if (/^[23]\d\d/.test(outcome)) continue;
        out[`${ROUTES[route]} → ${outcome}`] = n;
      }
    }
    return out;
  }
}

export class HttpDriver {
  // `timeout` makes the agent honour the server's `Keep-Alive: timeout=5` hint (it then drops idle
  // sockets a second early); without it, an idle socket can be reused just as the server closes it,
  // and that race shows up as ECONNRESET that is the client's fault, not the service's.
  private readonly agent = new Agent({ keepAlive: true, maxSockets: Infinity, maxFreeSockets: 1024, timeout: 120_000 });
  private readonly base: URL;
  private outstanding = 0;
  private readonly active = new Set<ClientRequest>();
  private closed = false;
  /** Requests refused by the MAX_OUTSTANDING guard. */
  dropped = 0;

  constructor(
    baseUrl: string,
    /** Where answers are recorded; swapped between the steps of a scenario. */
    public recorder: RouteRecorder,
  ) {
    this.base = new URL(baseUrl);
  }

  get inFlight(): number {
    return this.outstanding;
  }

  /**
   * Sends one request and records it under `route`. Never throws: transport failures come back as
   * status 0 and are recorded as their error code (ECONNRESET, TIMEOUT, ABORTED…).
   */
  async send(
    route: RouteKey,
    method: string,
    path: string,
    opts: { body?: Buffer | string; headers?: Record<string, string>; timeoutMs?: number; record?: boolean } = {},
  ): Promise<HttpAnswer> {
    if (this.outstanding >= MAX_OUTSTANDING || this.closed) {
      this.dropped++;
      return { status: 0, headers: {}, body: Buffer.alloc(0), ms: 0 };
    }
    this.outstanding++;
    const started = performance.now();
    try {
      const answer = await this.exchange(method, path, opts.body, opts.headers ?? {}, opts.timeoutMs ?? 30_000, started, BODY_ROUTES.has(route));
      if (opts.record !== false) {
        const outcome = answer.status >= 400 ? `${answer.status} ${errorCode(answer.body)}` : String(answer.status);
        this.recorder.record(route, answer.ms, outcome);
      }
      return answer;
    } catch (error) {
      const ms = performance.now() - started;
      const code = this.closed ? 'ABORTED_AT_END' : ((error as NodeJS.ErrnoException).code ?? (error as Error).name ?? 'ERROR');
      // Requests cut by the end of a scenario are not the service's failures: not recorded.
      if (opts.record !== false && code !== 'ABORTED_AT_END') this.recorder.record(route, ms, `0 ${code}`);
      return { status: 0, headers: {}, body: Buffer.alloc(0), ms };
    } finally {
      this.outstanding--;
    }
  }

  private exchange(
    method: string,
    path: string,
    body: Buffer | string | undefined,
    headers: Record<string, string>,
    timeoutMs: number,
    started: number,
    keepBody: boolean,
  ): Promise<HttpAnswer> {
    return new Promise<HttpAnswer>((resolve, reject) => {
      const payload = typeof body === 'string' ? Buffer.from(body) : body;
      const req = httpRequest(
        {
          agent: this.agent,
          host: this.base.hostname,
          port: this.base.port,
          method,
          path,
          headers: payload ? { 'content-length': String(payload.length), ...headers } : headers,
        },
        (res) => {
          // Bodies are read to the end either way (the latency includes the transfer), but kept only
          // when the harness needs them: holding every downloaded image would make the harness's
          // own garbage collector part of the measured latency.
          const keep = keepBody || (res.statusCode ?? 0) >= 400;
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => {
            if (keep) chunks.push(c);
          });
          res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks), ms: performance.now() - started }));
          res.on('error', reject);
        },
      );
      // A timer per request via the socket timeout, and one Set for the end-of-run abort: cheaper
      // than an AbortSignal per request, which costs the harness CPU it shares with the service.
      this.active.add(req);
      req.setTimeout(timeoutMs, () => req.destroy(Object.assign(new Error(`no answer within ${timeoutMs} ms`), { code: 'TIMEOUT' })));
      req.on('close', () => this.active.delete(req));
      req.on('error', (error: Error) => reject(this.closed ? Object.assign(error, { code: 'ABORTED_AT_END' }) : error));
      req.end(payload);
    });
  }

  /** Aborts every outstanding request (end of a scenario) and closes idle sockets. */
  close(): void {
    this.closed = true;
    for (const req of this.active) req.destroy();
    this.agent.destroy();
  }
}

function errorCode(body: Buffer): string {
  try {
    const code = (JSON.parse(body.toString('utf8')) as { code?: unknown }).code;
    return typeof code === 'string' ? code : 'NO_CODE';
  } catch {
    return 'NOT_JSON';
  }
}

/**
 * Calls `fire` at the times of a Poisson process of `ratePerSecond` for `durationMs` (exponential
 * gaps: arrivals from many independent users). Resolves when the duration is over; it does not wait
 * for what `fire` started. Timers fire late under load: every overdue arrival is sent at once, and
 * the worst lateness is reported, so a harness that fell behind is visible.
 */
export async function poissonArrivals(ratePerSecond: number, durationMs: number, fire: () => void, signal?: AbortSignal): Promise<{ sent: number; maxLagMs: number }> {
  if (ratePerSecond <= 0 || durationMs <= 0) return { sent: 0, maxLagMs: 0 };
  const start = performance.now();
  const end = start + durationMs;
  const maxArrivals = Math.ceil(ratePerSecond * (durationMs / 1000) * 3 + 100);
  let next = start + exponential(ratePerSecond);
  let sent = 0;
  let maxLagMs = 0;
  while (next < end && sent < maxArrivals && !signal?.aborted) {
    const wait = next - performance.now();
    if (wait > 1) await new Promise((r) => setTimeout(r, wait));
    const now = performance.now();
    while (next <= now && next < end && sent < maxArrivals) {
      maxLagMs = Math.max(maxLagMs, now - next);
      fire();
      sent++;
      next += exponential(ratePerSecond);
    }
  }
  const rest = end - performance.now();
  if (rest > 0 && !signal?.aborted) await new Promise((r) => setTimeout(r, rest));
  return { sent, maxLagMs };
}

function exponential(ratePerSecond: number): number {
  return (-Math.log(1 - Math.random()) / ratePerSecond) * 1000;
}
