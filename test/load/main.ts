/**
 * `npm run load`: the load harness. Starts the Gemini emulator as its own process (realistic
 * latency: log-normal, median 8 s, tail to 60 s, a few 429s and hangs), then for each scenario a
 * fresh service pointed at it, drives open-loop traffic, samples `/metrics` and /proc every second,
 * and prints one JSON summary as the last line of stdout. Progress goes to stderr. Flags and
 * `LOAD_*` variables: `npm run load -- --help` (options.ts). The default is the short profile (≤ 3 minutes, every scenario
 * scaled down); `--profile=full --report` is the run behind docs/capacity.md: it writes the generated tables
 * (docs/capacity/results.md) and charts, never the hand-written pages.
 */
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, setPriority, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { renderPng } from '../../src/gemini/emulator/emulator-image';
import { planDistributed, runDistributedScenario, type DistributedResult } from './distributed';
import { measureFloor, type FloorResult } from './floor';
import { parseCommandLine, type LoadOptions } from './options';
import { loadAverage, ROOT, startEmulator, useDistSnapshot, warmEmulator, type EmulatorProcess } from './processes';
import { capacityAnswer, writeReport, type LoadResults } from './report';
import { overloadSummary, planOverload, runOverloadScenario } from './overload';
import { planScenarios, runScenario, type ScenarioResult } from './scenarios';
import { multipartImage } from './traffic';

/**
 * A small prompt set, all 1:1 (1024², what the moonshot is about): the emulator caches 64 rendered
 * PNGs, so after the warm-up it only encodes cached bytes and is not the bottleneck under test.
 */
export const PROMPTS = [
  'a red apple on a blue table',
  'a teal wave under a gold sky',
  'navy night over an orange desert',
  'a green forest with a brown path',
  'pink flowers in a white vase',
  'a purple mountain at yellow dawn',
  'a black cat on a beige sofa',
  'turquoise sea and tan sand',
  'a coral reef in deep blue water',
  'a silver car on a grey road',
  'lavender fields under a light blue sky',
  'a crimson door in an ivory wall',
  'an olive grove at dusk',
  'a magenta neon sign in the rain',
  'a maroon train crossing a lime meadow',
  'an indigo storm over a salmon beach',
];

const log = (line: string) => process.stderr.write(`[load] ${line}\n`);

function compact(scenarios: ScenarioResult[]): unknown {
  return Object.fromEntries(
    scenarios.map((s) => [
      s.name,
      s.distributed ? compactDistributed(s.distributed) : s.overload ? 'the summary\'s overload entry' : s.runs.map((run) => ({
        run: run.name,
        settings: run.env,
        steps: run.steps.map(({ lightP99BySecond: _perSecond, fromT: _from, toT: _to, ...step }) => step),
        saturation: run.saturation,
        memoryTrend: run.memoryTrend,
        memoryDetail: run.memoryDetail,
        cpuProfile: run.profiles.map((p) => ({ file: p.file, busyShare: p.busyShare, top: p.components.slice(0, 6) })),
        harness: { maxArrivalLagMs: run.maxArrivalLagMs, dropped: run.dropped },
      })),
    ]),
  );
}

/** The distributed scenario without its time series and per-job list (they stay in the results file). */
function compactDistributed(result: DistributedResult): unknown {
  return result.runs.map(({ timeline: _timeline, kill, ...run }) => ({
    ...run,
    ...(kill ? { kill: { ...kill, takeover: { ...kill.takeover, records: kill.takeover.records.slice(0, 10) } } } : {}),
  }));
}

async function run(opts: LoadOptions, onProgress: (partial: LoadResults) => void): Promise<LoadResults> {
  const startedAt = new Date().toISOString();
  const load1Before = loadAverage()?.[0] ?? null;
  const workDir = mkdtempSync(join(tmpdir(), 'his-load-'));
  log(`work dir ${workDir} (service and emulator logs); profile ${opts.profile}; scenarios ${opts.scenarios.join(', ')}`);
  let emulator: EmulatorProcess | undefined;
  const scenarios: ScenarioResult[] = [];
  let floor: FloorResult | undefined;
  const results = (): LoadResults => ({
    startedAt,
    finishedAt: new Date().toISOString(),
    command: `npm run load${opts.argv.length ? ` -- ${opts.argv.join(' ')}` : ''}`,
    profile: opts.profile,
    machine: {
      cpus: cpus().length,
      cpuModel: cpus()[0]?.model.trim() ?? 'unknown',
      memoryGb: Math.round(totalmem() / 2 ** 30),
      node: process.version,
      load1Before,
      load1After: loadAverage()?.[0] ?? null,
    },
    emulator: {
      latency: opts.target ? 'the target\'s own Gemini' : opts.scenarios.every((n) => n === 'distributed') ? 'see the distributed scenario\'s settings' : opts.latency,
      rate429: opts.rate429,
      hangRate: opts.hangRate,
      nice: opts.emulatorNice,
      note: 'Its PNGs are 1024² with mild noise (≈ 700 KB; real Gemini PNGs are often 1.5–2 MB, so decode and copy costs here are on the low side).',
    },
    ...(floor ? { floor } : {}),
    scenarios: [...scenarios],
  });
  const removeSnapshot = opts.target ? () => undefined : useDistSnapshot();
  try {
    let png: Buffer;
    if (opts.target || opts.scenarios.every((name) => name === 'distributed')) {
      // No emulator of ours to ask (or none needed: the distributed scenario starts its own): paint
      // the same kind of picture locally for the palette uploads.
      png = await renderPng(PROMPTS[0], '1:1');
    } else {
      emulator = await startEmulator(
        {
          EMULATOR_LATENCY: opts.latency,
          EMULATOR_RATE_429: String(opts.rate429),
          EMULATOR_HANG_RATE: String(opts.hangRate),
          EMULATOR_SEED: '20261124',
        },
        join(workDir, 'emulator.log'),
      );
      // Gemini is another machine in production; a nice emulator stands in for one that does not
      // take CPU from the service when both want it (its own latency is timer-driven anyway).
      if (opts.emulatorNice > 0) setPriority(emulator.pid, opts.emulatorNice);
      log(`emulator pid ${emulator.pid} at ${emulator.url}, latency ${opts.latency}, nice ${opts.emulatorNice}`);
      png = await warmEmulator(emulator.url, PROMPTS);
      // The CPU floor of one generation, before any service starts (nothing else runs): each step's
      // CPU per generation is compared with it (cpuPerGeneration in the summary).
      if (opts.scenarios.some((name) => name !== 'reads' && name !== 'distributed')) {
        floor = await measureFloor({ emulatorUrl: emulator.url, prompt: PROMPTS });
        log(`floor: ${floor.floorMs} ms CPU per generation (JSON ${floor.parts.jsonMs}, base64 ${floor.parts.base64Ms}, sharp ${floor.parts.sharpMs})`);
      }
    }
    const paletteUpload = multipartImage(png, 5);
    for (const plan of planScenarios(opts)) {
      const started = Date.now();
      log(`scenario ${plan.name}: ${plan.description}`);
      if (plan.name === 'distributed') {
        // Its own emulator, services, nginx, database and Redis: see distributed.ts.
        const distributed = await runDistributedScenario(planDistributed(opts), { opts, prompts: PROMPTS, paletteUpload, workDir, log });
        scenarios.push({ name: plan.name, description: plan.description, runs: [], distributed });
      } else if (plan.name === 'overload') {
        const overload = await runOverloadScenario(planOverload(opts), { opts, emulator: emulator && { url: emulator.url, pid: emulator.pid }, prompts: PROMPTS, paletteUpload, floor, workDir, log });
        scenarios.push({ name: plan.name, description: plan.description, runs: [], overload });
      } else {
        scenarios.push(await runScenario(plan, { opts, emulator: emulator && { url: emulator.url, pid: emulator.pid }, prompts: PROMPTS, paletteUpload, floor, workDir, log }));
      }
      log(`scenario ${plan.name} done in ${((Date.now() - started) / 1000).toFixed(0)} s`);
      // A long run that dies later keeps what it measured so far.
      onProgress(results());
    }
  } finally {
    await emulator?.stop(5000);
    removeSnapshot();
  }
  return results();
}

async function main(): Promise<void> {
  const opts = parseCommandLine(process.argv.slice(2), process.env, { out: (t) => process.stdout.write(t), err: (t) => process.stderr.write(t) });
  if (typeof opts === 'number') process.exit(opts);
  if (opts.reportFrom) {
    const [results, ...extras] = opts.reportFrom.split(',').map((file) => JSON.parse(readFileSync(file.trim(), 'utf8')) as LoadResults);
    for (const file of writeReport(results, ROOT, extras)) log(`wrote ${file}`);
    const overload = results.scenarios.find((s) => s.overload)?.overload;
    console.log(JSON.stringify({ capacity: capacityAnswer(results), ...(overload ? { overload: overloadSummary(overload) } : {}), scenarios: compact(results.scenarios) }));
    return;
  }
  const out = opts.out ?? join(ROOT, 'dist-tools', 'load-results', `load-${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
  mkdirSync(join(out, '..'), { recursive: true });
  const results = await run(opts, (partial) => writeFileSync(out, JSON.stringify(partial)));
  writeFileSync(out, JSON.stringify(results));
  log(`full results (time series included): ${out}`);
  if (opts.report) for (const file of writeReport(results, ROOT)) log(`wrote ${file}`);
  const distributedSummary = results.scenarios.find((s) => s.distributed)?.distributed?.summary;
  const overloadResult = results.scenarios.find((s) => s.overload)?.overload;
  console.log(
    JSON.stringify({
      startedAt: results.startedAt,
      command: results.command,
      machine: results.machine,
      emulator: results.emulator,
      capacity: capacityAnswer(results),
      ...(results.floor ? { floor: results.floor } : {}),
      ...(distributedSummary ? { distributed: distributedSummary } : {}),
      ...(overloadResult ? { overload: overloadSummary(overloadResult) } : {}),
      scenarios: compact(results.scenarios),
      resultsFile: out,
    }),
  );
}

main().then(
  () => process.exit(0),
  (error: unknown) => {
    console.error(error);
    process.exit(1);
  },
);
