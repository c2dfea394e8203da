/**
 * The distributed scenario of `npm run load` (distributed.ts): its analysis on known inputs, nginx's
 * config accepted by nginx itself, and one tiny run for real (nginx, two instances from dist/,
 * PostgreSQL, a private Redis, the emulator, a SIGKILL and a restart), so the scenario cannot rot
 * unnoticed. Its assertions are about what happened (every generation final, the victim's jobs taken
 * over, the limit held, everything cleaned up), never about how fast. Needs `npm run build`, nginx
 * (scripts/install-nginx.sh), PostgreSQL and redis-server (scripts/start-test-services.sh).
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { renderPng } from '../../src/gemini/emulator/emulator-image';
import { withClient, TEST_POSTGRES_URL } from '../support/postgres';
import {
  defaultGeminiLimit,
  lostOf,
  perGeneration,
  runDistributedScenario,
  statusCounts,
  summarize,
  takeoversOf,
  type CpuSpan,
  type DistributedPlan,
  type DistributedRunResult,
} from './distributed';
import { findNginx, nginxConfig, summarizeBalancerLog } from './nginx';
import { parseOptions } from './options';
import { ROOT } from './processes';
import { distributedRows } from './report';
import { multipartImage } from './traffic';

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

describe('distributed load scenario: analysis', () => {
  it('counts as lost what is not final and what failed INTERRUPTED, nothing else', () => {
    const counts = statusCounts([
      { status: 'succeeded', error_code: null, n: '40' },
      { status: 'failed', error_code: 'GEMINI_TIMEOUT', n: 2 },
      { status: 'failed', error_code: 'INTERRUPTED', n: 1 },
      { status: 'canceled', error_code: 'CANCELED', n: 1 },
      { status: 'running', error_code: null, n: 3 },
      { status: 'queued', error_code: null, n: '1' },
    ]);
    expect(counts).toEqual({ succeeded: 40, 'failed GEMINI_TIMEOUT': 2, 'failed INTERRUPTED': 1, 'canceled CANCELED': 1, running: 3, queued: 1 });
    expect(lostOf(counts)).toBe(5);
    expect(lostOf({ succeeded: 10, 'failed GEMINI_RATE_LIMITED': 1 })).toBe(0);
  });

  it('measures a takeover from the kill to the next start (BullMQ) and to the new Gemini call (the image record)', () => {
    const kill = 1_000_000;
    const images = new Map([
      ['g1-0', { createdAt: kill + 20_000, geminiMs: 3_000, uploadMs: 50, paletteMs: 150, status: 'succeeded', errorCode: null }],
      ['g2-0', { createdAt: kill + 9_000, geminiMs: 0, uploadMs: 0, paletteMs: 0, status: 'failed', errorCode: 'INTERRUPTED' }],
      // Recorded by the victim just before it died: the job was taken over, the call not made again.
      ['g4-0', { createdAt: kill - 50, geminiMs: 1_500, uploadMs: 20, paletteMs: 100, status: 'succeeded', errorCode: null }],
    ]);
    const summary = takeoversOf(
      [
        { id: 'g1-0', stalledCounter: 1, processedOn: kill + 5_200 },
        { id: 'g2-0', stalledCounter: 2, processedOn: kill + 8_000 },
        // Never taken over: not part of it, however late it started.
        { id: 'g3-0', stalledCounter: 0, processedOn: kill + 30_000 },
        { id: 'g4-0', stalledCounter: 1, processedOn: kill + 5_000 },
      ],
      images,
      kill,
    );
    expect(summary).toMatchObject({ jobs: 3, longestJobRestartMs: 8_000, medianJobRestartMs: 5_200, longestGeminiRestartMs: 16_800 });
    expect(summary.records).toEqual([
      { jobId: 'g2-0', takeovers: 2, jobRestartMs: 8_000, geminiRestartMs: null, recordedBeforeKill: false, outcome: 'failed INTERRUPTED' },
      { jobId: 'g1-0', takeovers: 1, jobRestartMs: 5_200, geminiRestartMs: 16_800, recordedBeforeKill: false, outcome: 'succeeded' },
      { jobId: 'g4-0', takeovers: 1, jobRestartMs: 5_000, geminiRestartMs: null, recordedBeforeKill: true, outcome: 'succeeded' },
    ]);
    expect(takeoversOf([], new Map(), kill)).toMatchObject({ jobs: 0, longestJobRestartMs: null });
  });

  it('compares CPU per generation over the measured windows and sizes the Gemini limit from the rate', () => {
    const span = (services: number, postgres: number, finished: number): CpuSpan => ({
      seconds: 60,
      finished,
      cpuSeconds: { services, postgres, postgresServer: 0.1, redis: 0.5, nginx: 0.2, emulator: 1, loadGenerator: 1 },
      machineCpuSeconds: null,
    });
    const run = (name: 'embedded' | 'distributed', s: CpuSpan, maxInFlight: number, lost: number) =>
      ({ name, topology: name, window: { ...s, perGenerationMs: perGeneration(s) }, emulator: { stats: { maxInFlight } }, lost, balancer: { window: summarizeBalancerLog('') } }) as unknown as DistributedRunResult;
    const plan = { rate: 4, geminiLimit: 16, queueLockMs: 5000 } as DistributedPlan;
    const summary = summarize(plan, [run('embedded', span(12, 0, 240), 16, 0), run('distributed', span(13.2, 1.2, 240), 16, 0)]);
    expect(summary.cpuPerGenerationMs.embedded).toMatchObject({ services: 50, postgres: 0, redis: 2.1 });
    expect(summary.cpuPerGenerationMs).toMatchObject({ servicesRatio: 1.1, met: true });
    // (55 + 5 + 2.1 + 0.8) / (50 + 0 + 2.1 + 0.8)
    expect(summary.cpuPerGenerationMs.withDataStoresRatio).toBeCloseTo(1.19, 2);
    expect(summary).toMatchObject({ lostGenerations: { distributed: 0, met: true }, emulatorMaxInFlight: { neverAbove: true, limit: 16 } });
    expect(summarize(plan, [run('distributed', span(13, 1, 240), 17, 2)])).toMatchObject({
      lostGenerations: { distributed: 2, embedded: null, met: false },
      emulatorMaxInFlight: { neverAbove: false },
      cpuPerGenerationMs: { servicesRatio: null, met: null },
    });
    expect(perGeneration(span(1, 0, 0)).services).toBeNull();
    // 4/s × 3.4 s mean (median 3 s, sigma 0.5) ≈ 13.6 busy → 17 slots keep it ≈ 80 % busy.
    expect(defaultGeminiLimit(4, { kind: 'lognormal', medianMs: 3000, sigma: 0.5, maxMs: 20000 })).toBe(17);
    expect(defaultGeminiLimit(0.1, { kind: 'fixed', ms: 100 })).toBe(2);
  });

  it('reads what nginx did from its access log: retries to the other instance, gateway errors, upstreams', () => {
    const log = [
      '1000.000 200 GET 127.0.0.1:5001|200|0.004|/api/v1/generations/a',
      '1001.000 200 GET 127.0.0.1:5002, 127.0.0.1:5001|502, 200|0.010|/api/v1/generations/b',
      '1002.000 202 POST 127.0.0.1:5002, 127.0.0.1:5001|502, 202|0.012|/api/v1/generations',
      '1003.000 502 POST 127.0.0.1:5002|502|3.100|/api/v1/generations',
      '1004.000 502 GET service|502|0.000|/health/live',
      'garbage',
      '2000.000 200 GET 127.0.0.1:5001|200|0.004|/later',
    ].join('\n');
    expect(summarizeBalancerLog(log, 1_000_000, 1_500_000)).toEqual({
      requests: 5,
      byStatus: { '200': 2, '202': 1, '502': 2 },
      passedToNextUpstream: 2,
      passedToNextByMethod: { GET: 1, POST: 1 },
      gatewayErrors: 2,
      byUpstream: { '127.0.0.1:5001': 3, '127.0.0.1:5002': 1, service: 1 },
    });
  });

  it('takes the distributed flags, and leaves the scenario out of the default set', () => {
    expect(parseOptions([], {}).scenarios).not.toContain('distributed');
    expect(parseOptions([], {}).distributed).toEqual({ rate: undefined, limit: undefined, latency: undefined, queueLockMs: 5000, runs: ['embedded', 'distributed'], restart: true });
    const opts = parseOptions(['--scenarios=distributed', '--distributed-rate=6', '--queue-lock-ms=3000', '--distributed-runs=distributed', '--distributed-restart=false'], {
      LOAD_DISTRIBUTED_LIMIT: '12',
    });
    expect(opts.scenarios).toEqual(['distributed']);
    expect(opts.distributed).toMatchObject({ rate: 6, limit: 12, queueLockMs: 3000, runs: ['distributed'], restart: false });
    expect(() => parseOptions(['--queue-lock-ms=500'])).toThrow(/queue-lock-ms/);
    expect(() => parseOptions(['--distributed-runs=both'])).toThrow(/distributed-runs/);
  });
});

describe('distributed load scenario: nginx', () => {
  it('writes a config nginx accepts, with passive health checks, retries and unbuffered event streams', () => {
    const bin = findNginx();
    const dir = mkdtempSync(join(tmpdir(), 'his-nginx-test-'));
    try {
      const conf = nginxConfig({ prefix: dir, port: 18080, upstreams: ['127.0.0.1:18081', '127.0.0.1:18082'], settings: { maxFails: 2, failTimeoutS: 7 } });
      expect(conf).toContain('server 127.0.0.1:18082 max_fails=2 fail_timeout=7s;');
      expect(conf).toContain('proxy_next_upstream error timeout;');
      expect(conf).toMatch(/location ~ \^\/api\/v1\/generations\/\[\^\/\]\+\/events\$ \{[^}]*proxy_buffering off;/);
      expect(conf).toContain('listen 127.0.0.1:18080;');
      // Idle upstream connections end on nginx's side first (the instances get HTTP_KEEP_ALIVE_TIMEOUT_MS=65000).
      expect(conf).toMatch(/upstream service \{[^}]*keepalive_timeout 60s;/);
      // Every file nginx writes is inside its own folder.
      for (const path of conf.matchAll(/(?:pid|error_log|access_log|_temp_path) (\/\S+)/g)) expect(path[1].startsWith(dir)).toBe(true);
      writeFileSync(join(dir, 'nginx.conf'), conf);
      execFileSync(bin, ['-t', '-q', '-p', `${dir}/`, '-c', join(dir, 'nginx.conf'), '-e', join(dir, 'error.log')], { stdio: 'pipe' });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('distributed load scenario, end to end', () => {
  let workDir: string;

  beforeAll(() => {
    if (!existsSync(join(ROOT, 'dist', 'main.js'))) throw new Error('dist/ is missing: run `npm run build` first (npm test does)');
    // Made here, not when the file is read: a run that filters this test out leaves no folder.
    workDir = mkdtempSync(join(tmpdir(), 'his-load-dist-test-'));
  });

  afterAll(() => {
    if (workDir) rmSync(workDir, { recursive: true, force: true });
  });

  it('two instances behind nginx: one SIGKILLed while it holds jobs, its jobs taken over, nothing lost, the limit held, everything cleaned up', async () => {
    const opts = parseOptions(['--scenarios=distributed'], {});
    // Short and gentle: every Gemini call takes 1–2 s, so the victim always holds a job when the
    // kill comes (the kill waits for one, bounded), and a 4 s lock hands its jobs over soon enough. (A
    // 1 s lock lost live workers' jobs on a busy machine: a renewal late by 0.5 s counts as a stall.)
    const plan: DistributedPlan = {
      runs: ['distributed'],
      rate: 4,
      geminiLimit: 6,
      queueLockMs: 4000,
      latency: 'uniform:1000-2000',
      rate429: 0,
      hangRate: 0,
      generations: { ratePerSecond: 4, waitShare: 0.5, pollMs: 250, downloadShare: 0.5 },
      background: { live: 2 },
      warmupS: 1,
      windowS: 3,
      afterKillS: 5,
      restartAfterS: 2,
      idleS: 0,
      victimWaitMs: 15_000,
      settleMs: 60_000,
      serviceEnv: { LOG_LEVEL: 'warn' },
    };
    const result = await runDistributedScenario(plan, {
      opts,
      prompts: ['a red apple', 'a blue sea', 'a green hill'],
      paletteUpload: multipartImage(await renderPng('a red apple', '1:1'), 3),
      workDir,
      log: () => undefined,
    });

    const run = result.runs[0];
    expect(run.name).toBe('distributed');
    // Every generation reached a final state; none failed INTERRUPTED.
    expect(run.lost).toBe(0);
    expect(run.database.succeeded).toBeGreaterThan(10);
    expect(run.generations.accepted).toBeGreaterThan(5);
    // The victim held work; another worker took each of its jobs over, after the kill, and finished it.
    const kill = run.kill!;
    expect(kill.victimActiveJobs).toBeGreaterThanOrEqual(1);
    expect(kill.takeover.jobs).toBeGreaterThanOrEqual(1);
    expect(kill.takeoversCounted).toBe(kill.takeover.records.reduce((n, r) => n + r.takeovers, 0));
    for (const r of kill.takeover.records) {
      expect(r.jobRestartMs).toBeGreaterThan(0);
      // Either its Gemini call ran again after the kill, or the victim had recorded the image just
      // before it died and the new worker finished the generation from that record.
      if (r.recordedBeforeKill) expect(r.geminiRestartMs).toBeNull();
      else expect(r.geminiRestartMs).toBeGreaterThan(0);
      expect(r.outcome).toBe('succeeded');
    }
    expect(kill.restartedAtS).toBeGreaterThan(kill.atS);
    // The global limit held across the instances, and was used.
    expect(run.emulator.stats!.maxInFlight).toBeLessThanOrEqual(plan.geminiLimit);
    expect(run.emulator.stats!.maxInFlight).toBeGreaterThan(1);
    // The instances keep idle connections open longer than nginx does (see UPSTREAM_KEEPALIVE_S).
    expect(Number(run.env.HTTP_KEEP_ALIVE_TIMEOUT_MS)).toBeGreaterThan(60_000);
    // Both instances served through nginx before the kill.
    expect(Object.keys(run.balancer.window.byUpstream)).toHaveLength(2);
    // The event stream's first event came while its generation still ran (no proxy buffering), and the
    // cancel sent through nginx reached the job on whichever instance held it.
    expect(run.eventStream).toMatchObject({ firstStatus: expect.stringMatching(/^(queued|running)$/), finalStatus: 'canceled' });
    expect(run.eventStream!.error).toBeUndefined();
    // CPU was read for every group that took part.
    expect(run.window.finished).toBeGreaterThan(0);
    expect(run.window.perGenerationMs.services).toBeGreaterThan(0);
    expect(run.whole.cpuSeconds.postgres).toBeGreaterThan(0);
    expect(run.whole.cpuSeconds.redis).toBeGreaterThan(0);
    expect(result.summary).toMatchObject({ lostGenerations: { distributed: 0, met: true }, emulatorMaxInFlight: { neverAbove: true } });
    expect(distributedRows(result)).toContain('generations lost');

    // Nothing left behind: processes, the database, nginx's folder.
    const { resources } = run;
    for (const pid of [...resources.servicePids, resources.emulatorPid, resources.redisPid!]) expect(alive(pid)).toBe(false);
    expect(existsSync(resources.nginxPrefix)).toBe(false);
    const left = await withClient(TEST_POSTGRES_URL, (c) => c.query('select 1 from pg_database where datname = $1', [resources.database]));
    expect(left.rowCount).toBe(0);
  }, 180_000);
});
