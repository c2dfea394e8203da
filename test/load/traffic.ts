/**
 * What the simulated users do. A generation is a journey: create it (with `Prefer: wait=60`, or
 * without and then poll its status), then maybe download the image. Beside the journeys run
 * independent Poisson streams of light requests (liveness, status of a recent generation, history,
 * image downloads) and palette uploads, at fixed rates.
 */
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { HttpDriver, poissonArrivals, RouteRecorder } from './http-driver';
import { Samples, type LatencySummary } from './stats';

export interface GenerationTraffic {
  /** New generations per second (Poisson arrivals). */
  ratePerSecond: number;
  /** Share of creates sent with `Prefer: wait=60` (one long request); the rest answer 202 and poll. */
  waitShare: number;
  pollMs: number;
  /** Share of succeeded generations whose image the user then downloads. */
  downloadShare: number;
}

/** Requests per second of each independent stream. */
export interface BackgroundTraffic {
  live: number;
  status: number;
  history: number;
  image: number;
  palette: number;
}

export interface Workload {
  durationMs: number;
  generations?: GenerationTraffic;
  background?: Partial<BackgroundTraffic>;
  /** `count` extra generations (202 + poll) spread evenly over the first `overMs`. */
  burst?: { count: number; overMs: number };
}

/** What happened to the generations created in one workload, as the client saw it. */
export interface GenerationOutcomes {
  offered: number;
  accepted: number;
  /** Deliberate backpressure: 429 QUEUE_FULL (or RATE_LIMITED) with Retry-After. */
  rejected429: number;
  /** Any other failure to create (5xx, transport errors). */
  rejectedOther: number;
  /** Final states: "succeeded", "failed GEMINI_TIMEOUT", "canceled CANCELED"… */
  finished: Record<string, number>;
  /** Accepted but not final when the workload ended (still running in the service). */
  unfinishedAtEnd: number;
  /** Client-observed time from the create request to seeing the final state. */
  endToEndMs: LatencySummary;
  /** The service's own `timings` of succeeded generations. */
  serverTimingsMs: Record<'queueMs' | 'geminiMs' | 'uploadMs' | 'paletteMs' | 'totalMs', LatencySummary>;
}

const FINAL = new Set(['succeeded', 'failed', 'canceled']);
const TIMING_KEYS = ['queueMs', 'geminiMs', 'uploadMs', 'paletteMs', 'totalMs'] as const;
/** No journey outlives this, whatever the service does. */
const MAX_JOURNEY_MS = 240_000;
const RECENT = 512;

interface GenerationBody {
  id?: string;
  status?: string;
  error?: { code?: string } | null;
  timings?: Partial<Record<(typeof TIMING_KEYS)[number], number>>;
}

class OutcomeTracker {
  offered = 0;
  accepted = 0;
  rejected429 = 0;
  rejectedOther = 0;
  unfinished = 0;
  readonly finished = new Map<string, number>();
  readonly e2e = new Samples();
  readonly timings = Object.fromEntries(TIMING_KEYS.map((k) => [k, new Samples()])) as Record<(typeof TIMING_KEYS)[number], Samples>;

  result(): GenerationOutcomes {
    return {
      offered: this.offered,
      accepted: this.accepted,
      rejected429: this.rejected429,
      rejectedOther: this.rejectedOther,
      finished: Object.fromEntries(this.finished),
      unfinishedAtEnd: this.unfinished,
      endToEndMs: this.e2e.summary(),
      serverTimingsMs: Object.fromEntries(TIMING_KEYS.map((k) => [k, this.timings[k].summary()])) as GenerationOutcomes['serverTimingsMs'],
    };
  }
}

/** A bounded ring of recent values to pick from at random. */
class Recent<T> {
  private readonly items: T[] = [];
  private next = 0;
  push(item: T): void {
    if (this.items.length < RECENT) this.items.push(item);
    else this.items[this.next++ % RECENT] = item;
  }
  pick(): T | undefined {
    return this.items.length === 0 ? undefined : this.items[Math.floor(Math.random() * this.items.length)];
  }
}

function parse(body: Buffer): GenerationBody {
  try {
    return JSON.parse(body.toString('utf8')) as GenerationBody;
  } catch {
    return {};
  }
}

/** multipart/form-data with one `image` file part and a `size` field, built once and reused. */
export function multipartImage(png: Buffer, size = 5): { body: Buffer; contentType: string } {
  const boundary = `----load${Math.random().toString(16).slice(2)}`;
  const head = Buffer.from(
    `--${boundary}\r\nContent-Disposition: form-data; name="size"\r\n\r\n${size}\r\n` +
      `--${boundary}\r\nContent-Disposition: form-data; name="image"; filename="load.png"\r\nContent-Type: image/png\r\n\r\n`,
  );
  const tail = Buffer.from(`\r\n--${boundary}--\r\n`);
  return { body: Buffer.concat([head, png, tail]), contentType: `multipart/form-data; boundary=${boundary}` };
}

/**
 * Runs workloads against one service. Journeys outlive the workload that started them (a
 * generation takes seconds); their later requests are recorded by whichever recorder is current,
 * i.e. under the load that was running when they were made, and their outcome by the workload
 * that created them.
 */
export class TrafficRunner {
  private readonly ids = new Recent<string>();
  private readonly images = new Recent<string>();
  private readonly journeys = new Set<Promise<void>>();
  private readonly stopped = new AbortController();
  private readonly seeded: string[] = [];
  /** Worst lateness of a scheduled arrival, ms: large values mean the harness itself fell behind. */
  maxArrivalLagMs = 0;

  constructor(
    readonly driver: HttpDriver,
    private readonly prompts: readonly string[],
    private readonly paletteUpload: { body: Buffer; contentType: string },
  ) {}

  /** Runs `workload` to its end, recording into `recorder`; returns the outcomes of the generations it created so far. */
  async run(workload: Workload, recorder: RouteRecorder): Promise<{ outcomes: () => GenerationOutcomes }> {
    this.driver.recorder = recorder;
    const tracker = new OutcomeTracker();
    const streams: Promise<{ sent: number; maxLagMs: number }>[] = [];
    const gen = workload.generations;
    if (gen && gen.ratePerSecond > 0) {
      streams.push(poissonArrivals(gen.ratePerSecond, workload.durationMs, () => this.startJourney(tracker, gen), this.stopped.signal));
    }
    if (workload.burst) {
      const { count, overMs } = workload.burst;
      const burstTraffic: GenerationTraffic = { ratePerSecond: 0, waitShare: 0, pollMs: gen?.pollMs ?? 2000, downloadShare: 0 };
      streams.push(
        (async () => {
          const started = performance.now();
          for (let i = 0; i < count && !this.stopped.signal.aborted; i++) {
            const due = started + (i * overMs) / count;
            const wait = due - performance.now();
            if (wait > 1) await sleep(wait);
            this.startJourney(tracker, burstTraffic);
          }
          return { sent: count, maxLagMs: 0 };
        })(),
      );
    }
    const bg = workload.background ?? {};
    const background: [number | undefined, () => void][] = [
      [bg.live, () => void this.driver.send('live', 'GET', '/health/live')],
      [bg.history, () => void this.driver.send('history', 'GET', '/api/v1/generations?limit=20')],
      [
        bg.status,
        () => {
          const id = this.ids.pick();
          if (id) void this.driver.send('status', 'GET', `/api/v1/generations/${id}`);
        },
      ],
      [
        bg.image,
        () => {
          const path = this.images.pick();
          if (path) void this.driver.send('image', 'GET', path);
        },
      ],
      [
        bg.palette,
        () =>
          void this.driver.send('palette', 'POST', '/api/v1/palettes', {
            body: this.paletteUpload.body,
            headers: { 'content-type': this.paletteUpload.contentType },
          }),
      ],
    ];
    for (const [rate, fire] of background) {
      if (rate && rate > 0) streams.push(poissonArrivals(rate, workload.durationMs, fire, this.stopped.signal));
    }
    if (streams.length === 0) await sleep(workload.durationMs);
    for (const { maxLagMs } of await Promise.all(streams)) this.maxArrivalLagMs = Math.max(this.maxArrivalLagMs, maxLagMs);
    return { outcomes: () => tracker.result() };
  }

  /** Generations the harness has seen created (for status traffic). */
  seed(ids: string[], imagePaths: string[]): void {
    this.seeded.push(...ids);
    for (const id of ids) this.ids.push(id);
    for (const path of imagePaths) this.images.push(path);
  }

  seededIds(): string[] {
    return [...this.seeded];
  }

  /**
   * Waits, at most `timeoutMs`, for the journeys under way to end by themselves (their generations
   * final, or MAX_JOURNEY_MS reached); returns how many are still going.
   */
  async settle(timeoutMs: number): Promise<number> {
    const deadline = performance.now() + timeoutMs;
    while (this.journeys.size > 0 && performance.now() < deadline) await sleep(Math.min(250, Math.max(1, deadline - performance.now())));
    return this.journeys.size;
  }

  /**
   * Ends every journey: outstanding requests are aborted and generations not yet final are counted
   * as unfinished by the workload that created them.
   */
  async stop(): Promise<void> {
    this.stopped.abort();
    this.driver.close();
    await Promise.allSettled([...this.journeys]);
  }

  private startJourney(tracker: OutcomeTracker, traffic: GenerationTraffic): void {
    const journey = this.journey(tracker, traffic).catch(() => undefined);
    this.journeys.add(journey);
    void journey.finally(() => this.journeys.delete(journey));
  }

  private async journey(tracker: OutcomeTracker, traffic: GenerationTraffic): Promise<void> {
    const started = performance.now();
    const wait = Math.random() < traffic.waitShare;
    const prompt = this.prompts[Math.floor(Math.random() * this.prompts.length)];
    tracker.offered++;
    const created = await this.driver.send(wait ? 'createWait' : 'create', 'POST', '/api/v1/generations', {
      body: JSON.stringify({ prompt, aspectRatio: '1:1', paletteSize: 5 }),
      headers: { 'content-type': 'application/json', ...(wait ? { prefer: 'wait=60' } : {}) },
      timeoutMs: 75_000,
    });
    if (this.stopped.signal.aborted && created.status === 0) {
      // Cut by the end of the run (typically a Prefer: wait request still waiting): the service has
      // the generation, the client never saw its outcome.
      tracker.unfinished++;
      return;
    }
    if (created.status === 429) {
      tracker.rejected429++;
      return;
    }
    if (created.status !== 201 && created.status !== 202) {
      tracker.rejectedOther++;
      return;
    }
    tracker.accepted++;
    let g = parse(created.body);
    if (!g.id) return;
    this.ids.push(g.id);
    while (!FINAL.has(g.status ?? '') && performance.now() - started < MAX_JOURNEY_MS && !this.stopped.signal.aborted) {
      try {
        await sleep(traffic.pollMs, undefined, { signal: this.stopped.signal });
      } catch {
        break;
      }
      const polled = await this.driver.send('status', 'GET', `/api/v1/generations/${g.id}`);
      if (polled.status === 200) g = parse(polled.body);
    }
    if (!FINAL.has(g.status ?? '')) {
      tracker.unfinished++;
      return;
    }
    const key = g.status === 'succeeded' ? 'succeeded' : `${g.status} ${g.error?.code ?? 'NO_CODE'}`;
    tracker.finished.set(key, (tracker.finished.get(key) ?? 0) + 1);
    tracker.e2e.add(performance.now() - started);
    if (g.status !== 'succeeded') return;
    for (const k of TIMING_KEYS) {
      const v = g.timings?.[k];
      if (typeof v === 'number') tracker.timings[k].add(v);
    }
    const imagePath = `/api/v1/generations/${g.id}/images/0`;
    this.images.push(imagePath);
    if (Math.random() < traffic.downloadShare && !this.stopped.signal.aborted) await this.driver.send('image', 'GET', imagePath);
  }
}
