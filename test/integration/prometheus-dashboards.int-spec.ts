/**
 * The Grafana dashboards and Prometheus alert rules under grafana/ are proven against a real
 * Prometheus (Debian's binary, see scripts/install-prometheus.sh) scraping the real service
 * after a few generations, a failing one and a timed-out one:
 * - every PromQL expression of every dashboard panel returns data without error, once for the
 *   series as the service exposes them (`pipeline_stage_duration_bucket`) and once for the
 *   unit-suffixed names OTLP backends store (`pipeline_stage_duration_seconds_bucket`, produced
 *   here by a second scrape job with metric_relabel_configs);
 * - every dashboard variable finds the service's job;
 * - every alert rule loads, evaluates without error, and selects metrics that exist in both forms;
 * - after the first generation /metrics shows every series the contract lists, and no label
 *   carries an id or a prompt.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { otlpStyleRelabelConfigs, prometheusBinary, PrometheusHandle, Sample, startPrometheus } from '../support/prometheus';
import { ServiceProcess, startService } from '../support/service-process';

const ROOT = resolve(__dirname, '..', '..');
const DASHBOARD_DIR = join(ROOT, 'grafana', 'dashboards');
const ALERT_DIR = join(ROOT, 'grafana', 'alerts');
const RAW_JOB = 'service';
const OTLP_JOB = 'service-otlp-names';
const JOBS = [RAW_JOB, OTLP_JOB];
const API_KEY = 'dashboards-proof-key';

interface Panel {
  title?: string;
  type: string;
  panels?: Panel[];
  targets?: { expr?: string; refId: string }[];
}
interface Dashboard {
  uid: string;
  title: string;
  panels: Panel[];
  templating: { list: { name: string; type: string; definition?: string }[] };
}

const dashboardFiles = readdirSync(DASHBOARD_DIR).filter((f) => f.endsWith('.json'));
const alertFiles = readdirSync(ALERT_DIR)
  .filter((f) => /\.ya?ml$/.test(f))
  .map((f) => join(ALERT_DIR, f));

function loadDashboard(file: string): Dashboard {
  return JSON.parse(readFileSync(join(DASHBOARD_DIR, file), 'utf8')) as Dashboard;
}

function panelQueries(panels: Panel[]): { panel: string; refId: string; expr: string }[] {
  return panels.flatMap((p) => [
    ...(p.targets ?? []).filter((t) => t.expr).map((t) => ({ panel: p.title ?? '(untitled)', refId: t.refId, expr: t.expr! })),
    ...panelQueries(p.panels ?? []),
  ]);
}

/** What Grafana substitutes before sending a query, for one job. */
function forJob(expr: string, job: string): string {
  const out = expr
    .replace(/\$\{?job\}?/g, job)
    .replace(/\$\{?instance\}?/g, '.*')
    .replace(/\$__rate_interval/g, '1m')
    .replace(/\$__interval/g, '15s')
    .replace(/\$__range/g, '5m');
  if (out.includes('$')) throw new Error(`unsubstituted Grafana variable in: ${expr}`);
  return out;
}

const finite = (samples: Sample[]) => samples.some((s) => Number.isFinite(Number(s.value[1])));

async function createGeneration(baseUrl: string, prompt: string): Promise<{ id: string; status: string; error: { code: string } | null }> {
  const res = await fetch(`${baseUrl}/api/v1/generations`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', prefer: 'wait=30', 'x-api-key': API_KEY },
    body: JSON.stringify({ prompt, paletteSize: 3 }),
  });
  if (res.status !== 201) throw new Error(`POST /api/v1/generations → ${res.status}: ${await res.text()}`);
  return (await res.json()) as { id: string; status: string; error: { code: string } | null };
}

describe('Grafana dashboards and alert rules against a real Prometheus', () => {
  let service: ServiceProcess;
  let prometheus: PrometheusHandle;
  let firstExposition = '';
  let unauthorizedStatus = 0;
  const ids: string[] = [];
  const prompts = ['a lighthouse at dusk', 'a red fox in snow', 'a bowl of lemons', 'two teacups'];

  beforeAll(async () => {
    // Fails (never skips) with the install hint when Prometheus is missing.
    prometheusBinary();
    service = await startService({
      // `[emulator:hang]` becomes a GEMINI_TIMEOUT within the test; long enough that a busy machine
      // cannot time out the calls that should succeed.
      GEMINI_TIMEOUT_MS: '5000',
      GEMINI_MAX_RETRIES: '0',
      PALETTE_WORKERS: '1',
      LOG_LEVEL: 'warn',
      // With keys on, a request without one is answered 401 by a guard, before any interceptor.
      API_KEYS: API_KEY,
    });

    // One generation first: every series then exists and carries its # UNIT line, from which the
    // second job's renaming rules are derived.
    ids.push((await createGeneration(service.baseUrl, prompts[0])).id);
    firstExposition = await (await fetch(service.metricsUrl!)).text();

    const target = new URL(service.metricsUrl!).host;
    prometheus = await startPrometheus({
      jobs: [
        { name: RAW_JOB, target },
        { name: OTLP_JOB, target, metricRelabelConfigs: otlpStyleRelabelConfigs(firstExposition) },
      ],
      ruleFiles: alertFiles,
    });
    await waitFor(async () => (await prometheus.targets()).filter((t) => t.health === 'up').length === JOBS.length, 20_000, 'both scrape targets up');

    // Load while Prometheus scrapes: rates and quantiles need increases inside their windows.
    const results = await Promise.all([
      ...prompts.slice(1).map((p) => createGeneration(service.baseUrl, p)),
      createGeneration(service.baseUrl, 'a broken robot [emulator:500]'),
      createGeneration(service.baseUrl, 'a slow snail [emulator:hang]'),
    ]);
    ids.push(...results.map((g) => g.id));
    expect(results.map((g) => g.error?.code ?? g.status)).toEqual(['succeeded', 'succeeded', 'succeeded', 'GEMINI_ERROR', 'GEMINI_TIMEOUT']);
    for (const path of ['/api/v1/generations?limit=5', `/api/v1/generations/${ids[0]}`, '/api/v1/generations/gen_unknown', '/health/ready']) {
      await fetch(`${service.baseUrl}${path}`, { headers: { 'x-api-key': API_KEY } }).then((r) => r.arrayBuffer());
    }
    unauthorizedStatus = (await fetch(`${service.baseUrl}/api/v1/generations?limit=1`)).status;
    // Every histogram's last change must be seen by ≥ 2 scrapes of each job, and rules evaluated.
    await new Promise((r) => setTimeout(r, 3_500));
    await waitFor(async () => (await prometheus.rules()).every((r) => r.health !== 'unknown'), 10_000, 'every rule evaluated once');
  }, 120_000);

  afterAll(async () => {
    await prometheus?.stop();
    await service?.stop();
  });

  async function waitFor(check: () => Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!(await check())) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for: ${what}\nprometheus log:\n${prometheus?.logs() ?? ''}`);
      await new Promise((r) => setTimeout(r, 250));
    }
  }

  it('after one generation /metrics shows every series the contract lists', () => {
    const text = firstExposition;
    const series = (name: string, labels: Record<string, string> = {}) =>
      text.split('\n').some((line) => line.startsWith(`${name}{`) && Object.entries(labels).every(([k, v]) => line.includes(`${k}="${v}"`)));
    const missing: string[] = [];
    const need = (name: string, labels: Record<string, string> = {}) => {
      if (!series(name, labels)) missing.push(`${name}${JSON.stringify(labels)}`);
    };
    for (const stage of ['queue', 'gemini', 'upload', 'palette']) need('pipeline_stage_duration_bucket', { stage, outcome: 'ok' });
    need('gen_ai_client_operation_duration_bucket', { gen_ai_operation_name: 'generate_content', gen_ai_request_model: 'gemini-2.5-flash-image' });
    for (const type of ['input', 'output']) need('gen_ai_client_token_usage_bucket', { gen_ai_token_type: type, gen_ai_request_model: 'gemini-2.5-flash-image' });
    need('http_server_request_duration_bucket', { http_route: '/api/v1/generations', http_request_method: 'POST', http_response_status_code: '201' });
    for (const name of ['process_cpu_utilization', 'process_cpu_time_total', 'process_memory_usage', 'nodejs_eventloop_utilization']) need(name);
    for (const p of ['min', 'max', 'mean', 'p50', 'p90', 'p99']) need(`nodejs_eventloop_delay_${p}`);
    for (const name of ['gemini_semaphore_in_flight', 'gemini_semaphore_waiting', 'gemini_semaphore_wait_duration_bucket']) need(name);
    // Scale-out: the counters of rare events exist at 0 before any event, so per-instance panels have a series.
    for (const name of ['pipeline_queue_depth', 'pipeline_jobs_active', 'pipeline_jobs_takeovers_total', 'gemini_quota_pauses_total', 'gemini_quota_wait_duration_bucket']) need(name);
    expect(missing).toEqual([]);
    // Stable HTTP semantic conventions only (no old `http_server_duration` in milliseconds).
    expect(text).not.toMatch(/^http_server_duration/m);
  });

  it('labels requests with their route template, also when a guard rejected them', async () => {
    const text = await (await fetch(service.metricsUrl!)).text();
    const counts = text.split('\n').filter((l) => l.startsWith('http_server_request_duration_count{'));
    const has = (route: string, status: number) =>
      counts.some((l) => l.includes(`http_route="${route}"`) && l.includes(`http_response_status_code="${status}"`));
    expect(unauthorizedStatus).toBe(401);
    expect(has('/api/v1/generations', 401)).toBe(true);
    expect(has('/api/v1/generations/:id', 404)).toBe(true);
    expect(has('/api/v1/generations/:id', 200)).toBe(true);
    // Probes, scrapes and the in-process Gemini emulator's own requests are not API traffic.
    expect(counts.filter((l) => !l.includes('http_route='))).toEqual([]);
  });

  it('carries no ids or prompts in any label', async () => {
    const text = await (await fetch(service.metricsUrl!)).text();
    for (const value of [...ids, ...prompts]) expect(text).not.toContain(value);
  });

  it('scrapes the service in both name forms', async () => {
    const raw = await prometheus.seriesNames(RAW_JOB);
    const otlp = await prometheus.seriesNames(OTLP_JOB);
    expect(raw).toContain('pipeline_stage_duration_bucket');
    expect(raw).not.toContain('pipeline_stage_duration_seconds_bucket');
    expect(otlp).toContain('pipeline_stage_duration_seconds_bucket');
    expect(otlp).not.toContain('pipeline_stage_duration_bucket');
    expect(otlp).toContain('process_cpu_time_seconds_total');
    expect(otlp).toContain('nodejs_eventloop_utilization_ratio');
    expect(otlp).toContain('v8js_memory_heap_used_bytes');
  });

  describe.each(dashboardFiles)('dashboard %s', (file) => {
    const dashboard = loadDashboard(file);
    const queries = panelQueries(dashboard.panels);

    it('is a Grafana dashboard with a uid, Prometheus queries and a data source variable', () => {
      expect(dashboard.uid).toMatch(/^[\w-]{1,40}$/);
      expect(queries.length).toBeGreaterThan(0);
      expect(dashboard.templating.list.map((v) => v.name)).toEqual(expect.arrayContaining(['datasource', 'job', 'instance']));
      // No unit-less selector: each metric must be written to match both name forms explicitly.
      for (const q of queries) expect(q.expr).not.toMatch(/(^|[^\w"])[a-z]\w*_(bucket|count|sum|total)\s*[{[(]/);
    });

    it.each(JOBS)('every panel query returns data for job %s', async (job) => {
      const failures: string[] = [];
      for (const q of queries) {
        const expr = forJob(q.expr, job);
        try {
          const result = await prometheus.query(expr);
          if (result.length === 0) failures.push(`${q.panel} [${q.refId}]: empty result for ${expr}`);
          else if (!finite(result)) failures.push(`${q.panel} [${q.refId}]: only NaN/Inf for ${expr}`);
        } catch (error) {
          failures.push(`${q.panel} [${q.refId}]: ${(error as Error).message}`);
        }
      }
      expect(failures).toEqual([]);
    });

    it.each(JOBS)('every variable finds the service for job %s', async (job) => {
      for (const variable of dashboard.templating.list.filter((v) => v.type === 'query')) {
        const match = /^label_values\((.+),\s*(\w+)\)$/.exec(variable.definition ?? '');
        expect(match).not.toBeNull();
        const values = await prometheus.labelValues(match![2], forJob(match![1], job));
        expect(values.length).toBeGreaterThan(0);
        if (variable.name === 'job') expect(values).toEqual(expect.arrayContaining(JOBS));
      }
    });
  });

  describe('alert rules', () => {
    it('are all loaded from grafana/alerts and evaluate without error', async () => {
      const rules = await prometheus.rules();
      const names = rules.map((r) => r.name);
      expect(names).toEqual(
        expect.arrayContaining([
          'GeminiCallsHung',
          'EventLoopDelayHigh',
          'HttpServerErrorRateHigh',
          'GenerationFailureRateHigh',
          'PipelineQueueSaturated',
          'GeminiSemaphoreSaturated',
        ]),
      );
      expect(rules.filter((r) => r.health !== 'ok').map((r) => `${r.name}: ${r.health} ${r.lastError ?? ''}`)).toEqual([]);
      for (const rule of rules) expect(Array.isArray(await prometheus.query(rule.query))).toBe(true);
    });

    it.each(JOBS)('select metrics that exist for job %s', async (job) => {
      const rules = await prometheus.rules();
      const failures: string[] = [];
      for (const rule of rules) {
        const selectors = rule.query.match(/\{__name__[^}]*\}/g) ?? [];
        if (selectors.length === 0) failures.push(`${rule.name}: no {__name__…} selector (write selectors that match both name forms)`);
        for (const selector of selectors) {
          // The metric name part only: label conditions (5xx, GEMINI_TIMEOUT) may rightly match nothing now.
          const name = /__name__\s*=~?\s*"[^"]*"/.exec(selector)![0];
          const result = await prometheus.query(`{${name}, job="${job}"}`);
          if (result.length === 0) failures.push(`${rule.name}: no series for {${name}} in job ${job}`);
        }
      }
      expect(failures).toEqual([]);
    });
  });
});
