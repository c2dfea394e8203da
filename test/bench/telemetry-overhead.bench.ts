/**
 * Telemetry overhead: the built service is started in three modes and loaded with autocannon:
 * - `off`: OTEL_SDK_DISABLED=true;
 * - `on`: the defaults (SDK, Prometheus reader, runtime and host metrics; no OTLP endpoint, so no
 *   span is recorded, incoming requests are not instrumented and http.server.request.duration
 *   comes from `httpServerDurationMiddleware`; the HTTP instrumentation sees outgoing requests only);
 * - `otlp`: OTLP export of every span and of metrics (1 s interval) to a receiver in this process;
 *   incoming requests get instrumentation-http server spans, which also record the histogram.
 * Routes:
 * - a cheap API route, `GET /api/v1/generations/{id}` (one SQLite read, JSON answer), and
 * - the generation flow, `POST /api/v1/generations` with `Prefer: wait=30` (Gemini emulator in
 *   its own process, as Gemini is remote in production → local storage → palette worker), i.e.
 *   the whole pipeline per request.
 * Runs go off/on/otlp/otlp/on/off so drift on a shared machine hits every mode alike; figures are
 * means over the runs of a mode, deltas are relative to `off`. CPU per request comes from
 * /proc/<pid>/stat of the service process (its worker threads included, the emulator excluded):
 * on a 2-core machine where autocannon and the emulator compete for the same cores, it is the
 * steadier measure of overhead; throughput follows it.
 *
 * `npm run bench -- telemetry-overhead` calls `run()`; alone:
 * `node dist-tools/test/bench/telemetry-overhead.bench.js` after `npm run build && npm run build:tools`.
 * BENCH_SECONDS (default 10) sets the measured seconds per route and run.
 */
import { ChildProcess, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { OtlpReceiver, startOtlpReceiver } from '../support/otlp-receiver';
import { freePort, packageRoot, ServiceProcess, startService } from '../support/service-process';

interface AutocannonResult {
  requests: { average: number; total: number };
  latency: { p50: number; p99: number; average: number };
  non2xx: number;
  errors: number;
  timeouts: number;
}
type Autocannon = (opts: {
  url: string;
  method?: string;
  headers?: Record<string, string>;
  body?: string;
  connections: number;
  duration: number;
  /** Seconds before a request counts as timed out. */
  timeout?: number;
}) => Promise<AutocannonResult>;
// autocannon ships no type declarations; this is the part used here.
// eslint-disable-next-line @typescript-eslint/no-require-imports
const autocannon = require('autocannon') as Autocannon;

const SECONDS = Number(process.env.BENCH_SECONDS ?? 10);
const WARMUP_SECONDS = 2;
const CHEAP_CONNECTIONS = 16;
const GENERATION_CONNECTIONS = 8;
const CLOCK_TICKS = 100; // USER_HZ on Linux

type Mode = 'off' | 'on' | 'otlp';
const MODES: Mode[] = ['off', 'on', 'otlp'];

interface RouteRun {
  reqPerSec: number;
  p50Ms: number;
  p99Ms: number;
  non2xx: number;
  errors: number;
  cpuMsPerRequest: number;
}

function cpuSeconds(pid: number): number {
  // Fields 14 and 15 of /proc/<pid>/stat: utime and stime in clock ticks (after the `(comm)` field).
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS;
}

async function load(
  service: ServiceProcess,
  spec: { path: string; method?: string; body?: string; headers?: Record<string, string>; connections: number },
): Promise<RouteRun> {
  // autocannon treats a key set to undefined as a value: leave absent ones out.
  const opts = {
    url: `${service.baseUrl}${spec.path}`,
    connections: spec.connections,
    timeout: 60,
    ...(spec.method ? { method: spec.method } : {}),
    ...(spec.body ? { body: spec.body } : {}),
    ...(spec.headers ? { headers: spec.headers } : {}),
  };
  await autocannon({ ...opts, duration: WARMUP_SECONDS });
  const cpuBefore = cpuSeconds(service.pid);
  const result = await autocannon({ ...opts, duration: SECONDS });
  const cpu = cpuSeconds(service.pid) - cpuBefore;
  return {
    reqPerSec: Math.round(result.requests.average * 10) / 10,
    p50Ms: result.latency.p50,
    p99Ms: result.latency.p99,
    non2xx: result.non2xx,
    errors: result.errors + result.timeouts,
    cpuMsPerRequest: Math.round((cpu * 1000 * 1000) / Math.max(1, result.requests.total)) / 1000,
  };
}

/** The Gemini emulator as its own process (`npm run emulator`), shared by every run. */
async function startEmulator(): Promise<{ url: string; stop(): Promise<void> }> {
  const port = await freePort();
  const child: ChildProcess = spawn(process.execPath, [join(packageRoot(), 'dist', 'gemini', 'emulator', 'main.js')], {
    env: { ...process.env, EMULATOR_HOST: '127.0.0.1', EMULATOR_PORT: String(port) },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const url = `http://127.0.0.1:${port}`;
  await new Promise<void>((resolve, reject) => {
    child.once('exit', (code) => reject(new Error(`emulator exited with ${code}`)));
    child.stdout!.on('data', (chunk: Buffer) => {
      if (chunk.toString().includes('listening')) resolve();
    });
  });
  return {
    url,
    stop: () =>
      new Promise<void>((resolve) => {
        child.removeAllListeners('exit');
        child.once('exit', () => resolve());
        child.kill('SIGTERM');
      }),
  };
}

async function measure(mode: Mode, emulatorUrl: string, receiver: OtlpReceiver): Promise<{ cheap: RouteRun; generation: RouteRun }> {
  const service = await startService({
    OTEL_SDK_DISABLED: mode === 'off' ? 'true' : 'false',
    ...(mode === 'otlp' ? { OTEL_EXPORTER_OTLP_ENDPOINT: receiver.endpoint, OTEL_METRIC_EXPORT_INTERVAL: '1000' } : {}),
    GEMINI_BASE_URL: emulatorUrl,
    GEMINI_API_KEY: 'bench',
    // Same in every mode; info is the production default (one line per request).
    LOG_LEVEL: 'info',
    PALETTE_WORKERS: '1',
    PIPELINE_MAX_QUEUE: '1000',
  });
  try {
    const created = await fetch(`${service.baseUrl}/api/v1/generations`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', prefer: 'wait=30' },
      body: JSON.stringify({ prompt: 'benchmark seed image' }),
    });
    const { id } = (await created.json()) as { id: string };
    const cheap = await load(service, { path: `/api/v1/generations/${id}`, connections: CHEAP_CONNECTIONS });
    const generation = await load(service, {
      path: '/api/v1/generations',
      method: 'POST',
      headers: { 'content-type': 'application/json', prefer: 'wait=30' },
      body: JSON.stringify({ prompt: 'a lighthouse on a cliff at dusk', paletteSize: 5 }),
      connections: GENERATION_CONNECTIONS,
    });
    return { cheap, generation };
  } finally {
    await service.stop();
  }
}

function summarize(runs: RouteRun[]): RouteRun {
  const mean = (f: (r: RouteRun) => number) => Math.round((runs.reduce((a, r) => a + f(r), 0) / runs.length) * 1000) / 1000;
  return {
    reqPerSec: mean((r) => r.reqPerSec),
    p50Ms: mean((r) => r.p50Ms),
    p99Ms: mean((r) => r.p99Ms),
    non2xx: runs.reduce((a, r) => a + r.non2xx, 0),
    errors: runs.reduce((a, r) => a + r.errors, 0),
    cpuMsPerRequest: mean((r) => r.cpuMsPerRequest),
  };
}

export async function run(): Promise<Record<string, unknown>> {
  const order: Mode[] = ['off', 'on', 'otlp', 'otlp', 'on', 'off'];
  const results = Object.fromEntries(MODES.map((m) => [m, { cheap: [] as RouteRun[], generation: [] as RouteRun[] }])) as Record<
    Mode,
    { cheap: RouteRun[]; generation: RouteRun[] }
  >;
  const emulator = await startEmulator();
  const receiver = await startOtlpReceiver();
  try {
    for (const mode of order) {
      const r = await measure(mode, emulator.url, receiver);
      results[mode].cheap.push(r.cheap);
      results[mode].generation.push(r.generation);
    }
  } finally {
    await receiver.close();
    await emulator.stop();
  }
  const pct = (a: number, b: number) => Math.round(((a - b) / b) * 1000) / 10;
  const route = (key: 'cheap' | 'generation') => {
    const [off, on, otlp] = MODES.map((m) => summarize(results[m][key]));
    return {
      off,
      on,
      otlp,
      throughputDeltaPct: { on: pct(on.reqPerSec, off.reqPerSec), otlp: pct(otlp.reqPerSec, off.reqPerSec) },
      cpuPerRequestDeltaPct: { on: pct(on.cpuMsPerRequest, off.cpuMsPerRequest), otlp: pct(otlp.cpuMsPerRequest, off.cpuMsPerRequest) },
      reqPerSecRuns: Object.fromEntries(MODES.map((m) => [m, results[m][key].map((r) => r.reqPerSec)])),
    };
  };
  return {
    benchmark: 'telemetry-overhead',
    secondsPerRun: SECONDS,
    order,
    cheapRoute: { request: 'GET /api/v1/generations/{id}', connections: CHEAP_CONNECTIONS, ...route('cheap') },
    generationFlow: { request: 'POST /api/v1/generations (Prefer: wait=30)', connections: GENERATION_CONNECTIONS, ...route('generation') },
  };
}

if (require.main === module) {
  run()
    .then((result) => console.log(JSON.stringify(result)))
    .catch((error: unknown) => {
      console.error(error);
      process.exitCode = 1;
    });
}
