/**
 * The load harness itself: its parsers and statistics on known inputs, and one tiny scenario run
 * for real (emulator process + service process from dist/, open-loop traffic, /metrics and /proc
 * sampling, report and charts), so `npm run load` cannot rot unnoticed. Needs `npm run build`.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { componentOf, summarizeProfile } from './cpu-profile';
import { memoryDetailOf, type ProbeSample } from './memory-detail';
import { smapsByKind } from './memory-probe';
import { parseOptions } from './options';
import { parsePrometheusText, sumOf } from './prometheus-text';
import { PRODUCTION_MEMORY_ENV, ROOT, startEmulator, type EmulatorProcess } from './processes';
import { arrivedPerSecond, capacityAnswer, failure, GENERATED_HEADER, reportPaths, writeReport, type LoadResults } from './report';
import { memoryTrendOf, runScenario, type ScenarioPlan, type StepResult } from './scenarios';
import type { Tick } from './sampler';
import { linearFit, Samples } from './stats';
import { escapeXml, lineChart, niceTicks } from './svg-chart';
import { multipartImage } from './traffic';

describe('load harness helpers', () => {
  it('reads the Prometheus text format the service exports', () => {
    const text = [
      '# HELP gemini_semaphore_in_flight Gemini calls holding a semaphore slot',
      '# TYPE gemini_semaphore_in_flight gauge',
      'gemini_semaphore_in_flight{otel_scope_name="hybrid-image-search"} 7',
      'pipeline_generations_total{status="succeeded",otel_scope_name="x"} 40',
      'pipeline_generations_total{status="failed",error_code="GEMINI_TIMEOUT",otel_scope_name="x"} 2',
      'weird_label{path="a \\"quoted\\" \\\\ path"} 1.5e3',
      'http_bucket{le="+Inf"} +Inf',
      'not a sample line',
    ].join('\n');
    const samples = parsePrometheusText(text);
    expect(samples).toHaveLength(5);
    expect(sumOf(samples, 'gemini_semaphore_in_flight')).toBe(7);
    expect(sumOf(samples, 'pipeline_generations_total')).toBe(42);
    expect(sumOf(samples, 'pipeline_generations_total', { status: 'failed' })).toBe(2);
    expect(samples.find((s) => s.name === 'weird_label')).toEqual({ name: 'weird_label', labels: { path: 'a "quoted" \\ path' }, value: 1500 });
    expect(sumOf(samples, 'http_bucket')).toBe(Number.POSITIVE_INFINITY);
    expect(sumOf(samples, 'absent_metric')).toBeNaN();
  });

  it('computes nearest-rank percentiles and least-squares slopes', () => {
    const samples = new Samples();
    for (let i = 1; i <= 100; i++) samples.add(i);
    expect(samples.percentile(50)).toBe(50);
    expect(samples.percentile(99)).toBe(99);
    expect(samples.percentile(100)).toBe(100);
    expect(samples.summary()).toMatchObject({ count: 100, p50: 50, p95: 95, p99: 99, max: 100, mean: 50.5 });
    expect(new Samples().summary().p99).toBeNull();
    const fit = linearFit([
      [0, 1],
      [1, 3],
      [2, 5],
    ]);
    expect(fit?.slope).toBeCloseTo(2);
    expect(fit?.intercept).toBeCloseTo(1);
    expect(fit?.r2).toBeCloseTo(1);
    expect(linearFit([[1, 1]])).toBeNull();
  });

  it('draws a chart as SVG with round ticks, one line per series and escaped text', () => {
    expect(niceTicks(0, 47)).toEqual([0, 10, 20, 30, 40]);
    expect(niceTicks(0, 1)).toEqual([0, 0.2, 0.4, 0.6, 0.8, 1]);
    const svg = lineChart({
      title: 'p99 < 50 ms & more',
      xLabel: 'x',
      yLabel: 'y',
      series: [
        { name: 'a', points: [[0, 1], [1, 2], [2, null], [3, 4]] },
        { name: 'b', points: [[0, 5], [3, 6]] },
      ],
      hLines: [{ y: 50, label: 'budget' }],
    });
    expect(svg.startsWith('<svg xmlns="http://www.w3.org/2000/svg"')).toBe(true);
    expect(svg).toContain(escapeXml('p99 < 50 ms & more'));
    expect(svg).not.toContain('p99 < 50');
    // Series a is broken by its null into two polylines; series b is one.
    expect(svg.match(/<polyline/g)).toHaveLength(3);
  });

  it('attributes V8 profile samples to functions and components, pool waits as idle', () => {
    const frame = (functionName: string, url: string) => ({ functionName, url, lineNumber: 0, scriptId: '0', columnNumber: 0 });
    const profile = {
      nodes: [
        { id: 1, callFrame: frame('(root)', ''), children: [2, 3, 4, 5] },
        { id: 2, callFrame: frame('(idle)', '') },
        { id: 3, callFrame: frame('parse', 'file:///app/node_modules/@google/genai/dist/node/index.cjs') },
        { id: 4, callFrame: frame('all', 'file:///app/dist/database/node-sqlite.dialect.js') },
        { id: 5, callFrame: frame('atomicsWaitLoop', 'file:///app/node_modules/piscina/dist/worker.js') },
      ],
      // Each delta belongs to the sample before it.
      samples: [3, 3, 4, 2, 5],
      timeDeltas: [0, 1000, 2000, 2000, 4000, 8000],
      startTime: 0,
      endTime: 16000,
    };
    const summary = summarizeProfile(profile, 'CPU.1.2.0.1.cpuprofile');
    expect(summary.components).toEqual([
      { name: '@google/genai', ms: 3, shareOfBusy: 0.6 },
      { name: 'service: database', ms: 2, shareOfBusy: 0.4 },
    ]);
    expect(summary.busyShare).toBeCloseTo(5 / 17, 2);
    expect(componentOf('node:internal/deps/undici/undici', 'x')).toBe('node: internal');
    expect(componentOf('', '(garbage collector)')).toBe('V8 garbage collector');
  });

  it('judges a steady step by the arrivals it saw, and the sustained rate by the first failing step', () => {
    const step = (rate: number, arrived: number, finished: number, p99 = 20): StepResult =>
      ({
        label: `${rate}/s`,
        durationS: 60,
        warmupS: 20,
        offered: { generationsPerSecond: rate, requestsSent: 0 },
        achieved: { generationsFinishedPerSecond: finished, generationsSucceededPerSecond: finished, requestsPerSecond: 0 },
        generations: { offered: arrived * 60 },
        lightRoutesLatencyMs: { p99 },
        verdict: { lightP99Under50ms: p99 < 50, onlyDeliberateErrors: true, unexpectedErrors: {} },
        service: {},
      }) as unknown as StepResult;
    // Poisson arrivals below the nominal rate: the service finished what came (4.1 of 4.48/s).
    expect(arrivedPerSecond(step(5, 4.48, 4.1))).toBe(4.48);
    expect(failure(step(5, 4.48, 4.1))).toBeNull();
    expect(failure(step(5, 5, 4.1))).toBe('finished 4.1/s');
    expect(failure(step(30, 31, 31, 61))).toBe('light p99 61 ms');

    const results = {
      scenarios: [{ name: 'steady', description: '', runs: [{ steps: [step(40, 40, 40, 70), step(10, 10, 10), step(20, 20, 20, 55), step(25, 25, 25)] }] }],
    } as unknown as LoadResults;
    const answer = capacityAnswer(results);
    // 25/s passes, but 20/s failed first: the sweep's answer is the last rate before that, 10/s.
    expect(answer.sustainedGenerationsPerSecond).toBe(10);
    // Light routes late → the main thread, not whichever queue happened to fill.
    expect(answer.firstLimit).toMatch(/^20\/s: light p99 55 ms → event loop \(delay p99/);
  });

  it('splits /proc smaps into glibc main heap and other anonymous memory, and finds the kind that grows', () => {
    const smaps = [
      '55d0c0000000-55d0c8000000 rw-p 00000000 00:00 0                          [heap]',
      'Size:             131072 kB',
      'Anonymous:         99000 kB',
      '7f0000000000-7f0000040000 rw-p 00000000 00:00 0 ',
      'Size:                256 kB',
      'Anonymous:           256 kB',
      'LazyFree:             64 kB',
      '7f0000080000-7f00000c0000 rw-p 00000000 00:00 0 ',
      'Size:                256 kB',
      'Anonymous:           128 kB',
      '7f00000c0000-7f0000100000 ---p 00000000 00:00 0 ',
      'Size:                256 kB',
      'Anonymous:             0 kB',
      '7f0000100000-7f0000200000 r-xp 00000000 08:01 1234                       /usr/lib/libc.so.6',
      'Size:               1024 kB',
      'Anonymous:             4 kB',
      '7f0000300000-7f0000400000 rw-p 00000000 00:00 0',
      'Size:               1024 kB',
      'Anonymous:          1000 kB',
      '7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0                          [stack]',
      'Anonymous:           132 kB',
    ].join('\n');
    // V8 page flags: an old-space page (0x184) and a semi-space page (TO_PAGE 0x10 | 0x2); the
    // inaccessible mapping is never read.
    const flags = new Map([
      [0x7f0000000000, 0x184n],
      [0x7f0000080000, 0x12n],
    ]);
    const read: number[] = [];
    const pageFlags = (start: number) => (read.push(start), flags.get(start) ?? null);
    expect(smapsByKind(smaps, pageFlags)).toEqual({ brk: 99000, v8Pages: 384, v8YoungPages: 128, other: 1000, lazyFree: 64 });
    expect(read).toEqual([0x7f0000000000, 0x7f0000080000]);
    expect(smapsByKind(smaps)).toMatchObject({ v8Pages: 384, v8YoungPages: 0 });

    // 20 minutes, a sample every 15 s: flat V8 heap, Buffers swinging, glibc's heap growing 1 MB/min.
    const MB = 1024 * 1024;
    const samples: ProbeSample[] = Array.from({ length: 81 }, (_, i) => ({
      at: 1_000_000 + i * 15_000,
      rssAnonKb: (300 + i * 0.25) * 1024,
      rssFileKb: 70 * 1024,
      threads: 16,
      fds: 200,
      v8MainPhysical: 150 * MB,
      v8MainUsed: 80 * MB,
      v8MainCodePhysical: 16 * MB,
      v8MainNewPhysical: 60 * MB,
      v8WorkersPhysical: 35 * MB,
      cppHeapResident: 1 * MB,
      arrayBuffers: (i % 2 ? 40 : 10) * MB,
      mallocMainHeapKb: (100 + i * 0.25) * 1024,
      v8PagesKb: 190 * 1024,
      v8YoungPagesKb: (60 + i * 0.1) * 1024,
      otherAnonKb: (60 + (i % 2 ? 30 : 0)) * 1024,
      lazyFreeKb: 4096,
    }));
    const detail = memoryDetailOf(samples, 1_000_000 + 60_000, 1_000_000 + 20 * 60_000, 'x.jsonl')!;
    expect(detail).toMatchObject({ windowS: 1140, edgeS: 285, samples: 77 });
    const row = (kind: string) => detail.rows.find((r) => r.kind === kind)!;
    expect(row('glibc main heap ([heap])')).toMatchObject({ slopeMbPerMin: 1, secondHalfSlopeMbPerMin: 1 });
    expect(row('glibc main heap ([heap])').endMb! - row('glibc main heap ([heap])').startMb!).toBeCloseTo(14.5, 0);
    expect(row('V8 heap, main thread (resident)')).toMatchObject({ startMb: 150, endMb: 150, slopeMbPerMin: 0 });
    expect(Math.abs(row('Buffers, main thread').slopeMbPerMin!)).toBeLessThan(0.1);
    expect(row('V8 pages, every isolate (256 kB mappings)')).toMatchObject({ startMb: 190, endMb: 190 });
    expect(row('  of which young generation (semi-spaces)')).toMatchObject({ slopeMbPerMin: 0.4 });
    // A file from a probe that did not split the young generation: that row is empty, not zero.
    const older = samples.map(({ v8YoungPagesKb: _, ...rest }) => rest);
    const olderRow = memoryDetailOf(older, 0, Infinity, 'x')!.rows.find((r) => r.kind === '  of which young generation (semi-spaces)')!;
    expect(olderRow).toMatchObject({ startMb: null, endMb: null, slopeMbPerMin: null });
    expect(memoryDetailOf(samples.slice(0, 3), 0, Infinity, 'x')).toBeNull();
  });

  it('calls a soak bounded only when what stays after the collections is flat over its second half', () => {
    // 40 minutes of per-second ticks; the Buffers of images in flight make RSS swing ±8 MB.
    const ticks = (rss: (min: number) => number, heap: (min: number) => number = () => 80) =>
      Array.from({ length: 2400 }, (_, i) => ({ t: i, rssMb: rss(i / 60) + 8 * Math.sin(i / 7), heapUsedMb: heap(i / 60) }) as Tick);
    // Warm-up: +2 MB/min for 10 minutes, then a plateau.
    const plateau = memoryTrendOf(ticks((m) => 400 + 2 * Math.min(m, 10)), 0, 2400)!;
    expect(plateau.bounded).toBe(true);
    expect(Math.abs(plateau.rssSecondHalfSlopeMbPerMin!)).toBeLessThan(0.05);
    expect(Math.abs(plateau.rssFloorSecondHalfSlopeMbPerMin!)).toBeLessThan(0.05);
    // A slow leak that never levels: 0.6 MB/min (the harness's first rule called this bounded).
    const creep = memoryTrendOf(ticks((m) => 400 + 0.6 * m), 0, 2400)!;
    expect(creep.bounded).toBe(false);
    expect(creep.rssFloorSecondHalfSlopeMbPerMin).toBeCloseTo(0.6, 1);
    expect(creep.rssPerDayMb).toBeGreaterThan(800);
    // RSS flat but the JS heap growing 1 MB/min.
    const heapLeak = memoryTrendOf(ticks(() => 400, (m) => 80 + m), 0, 2400)!;
    expect(heapLeak.bounded).toBe(false);
    expect(heapLeak.heapFloorSecondHalfSlopeMbPerMin).toBeCloseTo(1, 1);

    // A mark-compact every 12 s: garbage piles up 1 MB/s, then the heap and RSS fall back to what
    // is live. Over the second half V8 lets more pile up before collecting (3 → 6 MB/s ramps
    // late): the means rise, the floors do not (what the service shipped with showed this).
    const sawtooth = (base: number, minute: number, i: number) => base + (i % 12) * (minute < 30 ? 1 : 1 + (minute - 30) / 10);
    const gc = (leak: number) =>
      Array.from({ length: 2400 }, (_, i) => ({ t: i, rssMb: sawtooth(350 + leak * (i / 60), i / 60, i), heapUsedMb: sawtooth(65, i / 60, i) }) as Tick);
    const headroom = memoryTrendOf(gc(0), 0, 2400)!;
    expect(headroom.rssSecondHalfSlopeMbPerMin!).toBeGreaterThan(0.2); // the means' rule would call this growing
    expect(headroom.rssFloorSecondHalfSlopeMbPerMin).toBe(0);
    expect(headroom.heapFloorSecondHalfSlopeMbPerMin).toBe(0);
    expect(headroom.bounded).toBe(true);
    // The same sawtooth on a floor that rises 0.5 MB/min.
    const risingFloor = memoryTrendOf(gc(0.5), 0, 2400)!;
    expect(risingFloor.rssFloorSecondHalfSlopeMbPerMin).toBeCloseTo(0.5, 1);
    expect(risingFloor.bounded).toBe(false);

    // Under a minute of samples there is no trend to speak of.
    expect(memoryTrendOf(ticks(() => 400).slice(0, 50), 0, 2400)).toBeNull();
  });

  it('runs the service with the memory settings of `npm start` and the Dockerfile', () => {
    // Load results only speak for production if the service runs the way production runs it.
    const start = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string> }).scripts.start;
    const dockerfile = readFileSync(join(ROOT, 'Dockerfile'), 'utf8');
    const { NODE_OPTIONS: nodeOptions, ...glibc } = PRODUCTION_MEMORY_ENV;
    for (const [name, value] of Object.entries(glibc)) {
      expect(start).toContain(`${name}=\${${name}:-${value}}`);
      expect(dockerfile).toMatch(new RegExp(`^\\s+${name}=${value} \\\\$`, 'm'));
    }
    // Before the caller's own NODE_OPTIONS, so that a later --max-semi-space-size there wins.
    expect(start).toContain(`NODE_OPTIONS="${nodeOptions} \${NODE_OPTIONS:-}"`);
    expect(dockerfile).toContain(`NODE_OPTIONS="${nodeOptions}"`);
  });

  it('parses flags over LOAD_* variables and rejects unknown ones', () => {
    const opts = parseOptions(['--scenarios=steady,burst', '--rates=1,2', '--env=PALETTE_WORKERS=1', '--report'], { LOAD_PROFILE: 'full', LOAD_SCENARIOS: 'soak', LOAD_SOAK_RATE: '20' });
    expect(opts).toMatchObject({ scenarios: ['steady', 'burst'], profile: 'full', rates: [1, 2], serviceEnv: { PALETTE_WORKERS: '1' }, report: true, moonshotRate: 40, soakRate: 20 });
    expect(parseOptions([], {}).soakRate).toBeUndefined();
    expect(() => parseOptions(['--soak-rate=0'])).toThrow(/soak-rate/);
    expect(() => parseOptions(['--nope=1'])).toThrow(/Unknown flag/);
    expect(() => parseOptions(['--scenarios=unknown'])).toThrow(/Unknown scenario/);
    expect(() => parseOptions(['--rate-429=2'])).toThrow(/rate-429/);
  });
});

describe('a load run, end to end', () => {
  let emulator: EmulatorProcess;
  const workDir = mkdtempSync(join(tmpdir(), 'his-load-test-'));

  beforeAll(async () => {
    if (!existsSync(join(ROOT, 'dist', 'main.js'))) throw new Error('dist/ is missing: run `npm run build` first (npm test does)');
    emulator = await startEmulator({ EMULATOR_LATENCY: 'uniform:100-300', EMULATOR_SEED: '7' }, join(workDir, 'emulator.log'));
  });

  afterAll(async () => {
    await emulator?.stop(5000);
    rmSync(workDir, { recursive: true, force: true });
  });

  it('drives a service with palette work on the main thread, samples it, and writes the report', async () => {
    const opts = parseOptions(['--scenarios=palette', '--memory-detail'], {});
    const png = Buffer.from(
      await (await fetch(`${emulator.url}/v1/models/m:generateContent`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-goog-api-key': 'k' },
        body: JSON.stringify({ contents: [{ parts: [{ text: 'a red square [emulator:latency=0]' }] }], generationConfig: { responseModalities: ['IMAGE'] } }),
      }).then((r) => r.json() as Promise<{ candidates: { content: { parts: { inlineData: { data: string } }[] } }[] }>)).candidates[0].content.parts[0].inlineData.data,
      'base64',
    );
    const plan: ScenarioPlan = {
      name: 'palette',
      description: 'harness self-test',
      runs: [
        {
          name: 'inline',
          // MEMORY_PROBE_MS: the memory probe (--memory-detail) samples often enough for a 3 s step.
          env: { PALETTE_MODE: 'inline', GEMINI_MAX_CONCURRENCY: '16', PALETTE_WORKERS: '1', LOG_LEVEL: 'warn', MEMORY_PROBE_MS: '200' },
          steps: [
            {
              label: '4 gen/s',
              offeredGenerationsPerSecond: 4,
              warmupS: 1,
              workload: { durationMs: 3000, generations: { ratePerSecond: 4, waitShare: 0.5, pollMs: 250, downloadShare: 1 }, background: { live: 10, status: 10, history: 5, palette: 4 } },
            },
          ],
        },
      ],
    };
    const result = await runScenario(plan, {
      opts,
      emulator: { url: emulator.url, pid: emulator.pid },
      prompts: ['a red apple', 'a blue sea'],
      paletteUpload: multipartImage(png, 3),
      workDir,
      log: () => undefined,
    });

    const run = result.runs[0];
    const step = run.steps[0];
    expect(step.verdict.unexpectedErrors).toEqual({});
    expect(step.generations!.accepted).toBeGreaterThan(3);
    // Every accepted generation either succeeded or was still running when the 3 s step ended (on a
    // busy machine, possibly all of them): none failed, and the harness accounted for each (the
    // unfinished also count creates still waiting for their answer, not yet accepted).
    const { finished, unfinishedAtEnd, accepted } = step.generations!;
    expect(Object.keys(finished).filter((k) => k !== 'succeeded')).toEqual([]);
    expect(finished.succeeded ?? 0).toBeLessThanOrEqual(accepted);
    expect((finished.succeeded ?? 0) + unfinishedAtEnd).toBeGreaterThanOrEqual(accepted);
    expect(step.routes['POST /api/v1/palettes'].outcomes['200']).toBeGreaterThan(0);
    expect(step.routes['GET /health/live'].latencyMs.count).toBeGreaterThan(10);
    expect(step.lightRoutesLatencyMs.p99).toBeGreaterThan(0);
    // The sampler saw the process: /proc figures and the service's own metrics.
    const tick = run.ticks.find((t) => t.rssMb !== null && t.eventLoopDelayP99Ms !== null && t.cpuPct !== null);
    expect(tick).toBeDefined();
    expect(tick!.rssMb!).toBeGreaterThan(30);
    expect(Math.max(...run.ticks.map((t) => t.finished ?? 0))).toBeGreaterThan(0);
    // The memory probe ran inside the service and its samples cover the step's window.
    const kind = (name: string) => run.memoryDetail!.rows.find((r) => r.kind === name)!;
    expect(run.memoryDetail!.samples).toBeGreaterThanOrEqual(4);
    expect(kind('V8 heap, main thread (resident)').endMb!).toBeGreaterThan(10);
    expect(kind('RSS, anonymous').endMb!).toBeGreaterThan(kind('V8 heap, main thread (resident)').endMb!);
    expect(kind('glibc main heap ([heap])').endMb!).toBeGreaterThan(1);

    const results: LoadResults = {
      startedAt: '2026-01-01T00:00:00.000Z',
      finishedAt: '2026-01-01T00:00:10.000Z',
      command: 'npm run load -- --scenarios=palette',
      profile: 'short',
      machine: { cpus: 2, cpuModel: 'test', memoryGb: 4, node: process.version, load1Before: 0, load1After: 0 },
      emulator: { latency: 'uniform:100-300', rate429: 0, hangRate: 0, note: '' },
      scenarios: [result],
    };
    expect(capacityAnswer(results).palette?.inline?.lightP99Ms).toBe(step.lightRoutesLatencyMs.p99);
    const written = writeReport(results, workDir);
    const { resultsFile, chartDir } = reportPaths(workDir);
    const text = readFileSync(resultsFile, 'utf8');
    expect(text.startsWith(GENERATED_HEADER)).toBe(true);
    expect(text).toContain('PALETTE_MODE=inline');
    expect(text).toContain('Memory by kind');
    expect(written).toContain(join(chartDir, 'palette-inline-vs-pool.svg'));
    // Every chart the tables show sits beside them.
    const images = [...text.matchAll(/!\[[^\]]*\]\(([^)]+)\)/g)].map((m) => m[1]);
    expect(images).toContain('palette-inline-vs-pool.svg');
    for (const image of images) expect(existsSync(join(chartDir, image))).toBe(true);
  });
});
