import { ChildProcess, execFileSync, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort, packageRoot } from './service-process';

const ROOT = packageRoot();
const LOCAL_BINARY = join(ROOT, '.tools', 'prometheus', 'usr', 'bin', 'prometheus');

/**
 * The Prometheus binary: `.tools/prometheus/usr/bin/prometheus` (what scripts/install-prometheus.sh
 * unpacks) or `prometheus` on PATH. Throws, never skips: the dashboard proof must not pass by
 * not running.
 */
export function prometheusBinary(): string {
  if (existsSync(LOCAL_BINARY)) return LOCAL_BINARY;
  try {
    return execFileSync('sh', ['-c', 'command -v prometheus'], { encoding: 'utf8' }).trim();
  } catch {
    throw new Error(
      'Prometheus binary not found (neither .tools/prometheus/usr/bin/prometheus nor `prometheus` on PATH): ' +
        'run `bash scripts/install-prometheus.sh` first (.ci/run does)',
    );
  }
}

/** `promtool`, from the same place as `prometheusBinary()` (the Debian package ships both). Throws, never skips. */
export function promtoolBinary(): string {
  const local = join(ROOT, '.tools', 'prometheus', 'usr', 'bin', 'promtool');
  if (existsSync(local)) return local;
  try {
    return execFileSync('sh', ['-c', 'command -v promtool'], { encoding: 'utf8' }).trim();
  } catch {
    throw new Error('promtool not found (neither .tools/prometheus/usr/bin/promtool nor on PATH): run `bash scripts/install-prometheus.sh` first');
  }
}

/** One `metric_relabel_configs` entry (Prometheus's snake_case field names). */
export interface RelabelConfig {
  source_labels?: string[];
  regex?: string;
  target_label?: string;
  replacement?: string;
  action?: 'replace' | 'labeldrop' | 'drop' | 'keep';
}

export interface ScrapeJob {
  name: string;
  /** `host:port` */
  target: string;
  metricsPath?: string;
  metricRelabelConfigs?: RelabelConfig[];
}

export interface Sample {
  metric: Record<string, string>;
  value: [number, string];
}

export interface RuleState {
  name: string;
  type: 'alerting' | 'recording';
  query: string;
  health: 'ok' | 'err' | 'unknown';
  lastError?: string;
  state?: string;
  group: string;
  file: string;
}

export interface PrometheusHandle {
  readonly url: string;
  /** Instant query; throws with Prometheus's error (and the expression) when it fails. */
  query(expr: string): Promise<Sample[]>;
  /** Names of the series currently present for a job (from the TSDB). */
  seriesNames(job: string): Promise<Set<string>>;
  /** Label values, like Grafana's `label_values(match, label)`. */
  labelValues(label: string, match?: string): Promise<string[]>;
  /** Every rule loaded from `ruleFiles`, with its evaluation health. */
  rules(): Promise<RuleState[]>;
  /** Scrape targets with their health (`up`, `down`, `unknown`) and last error. */
  targets(): Promise<{ job: string; health: string; lastError: string }[]>;
  logs(): string;
  stop(): Promise<void>;
}

interface ApiAnswer<T> {
  status: 'success' | 'error';
  data: T;
  errorType?: string;
  error?: string;
}

/**
 * Starts a real Prometheus on 127.0.0.1 with a generated config: every job scraped every second,
 * `ruleFiles` loaded and evaluated every second, TSDB in a temporary directory. Resolves once
 * Prometheus reports ready.
 */
export async function startPrometheus(options: { jobs: ScrapeJob[]; ruleFiles?: string[] }): Promise<PrometheusHandle> {
  const binary = prometheusBinary();
  const dir = await mkdtemp(join(tmpdir(), 'his-prometheus-'));
  const port = await freePort();
  const config = {
    global: { scrape_interval: '1s', scrape_timeout: '900ms', evaluation_interval: '1s' },
    rule_files: options.ruleFiles ?? [],
    scrape_configs: options.jobs.map((job) => ({
      job_name: job.name,
      metrics_path: job.metricsPath ?? '/metrics',
      static_configs: [{ targets: [job.target] }],
      metric_relabel_configs: job.metricRelabelConfigs ?? [],
    })),
  };
  // JSON is YAML: no YAML library needed to write Prometheus's config.
  await writeFile(join(dir, 'prometheus.yml'), JSON.stringify(config, null, 2));

  const child: ChildProcess = spawn(
    binary,
    [
      `--config.file=${join(dir, 'prometheus.yml')}`,
      `--storage.tsdb.path=${join(dir, 'data')}`,
      `--web.listen-address=127.0.0.1:${port}`,
      '--web.enable-lifecycle',
      '--log.level=warn',
    ],
    { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let output = '';
  const keep = (chunk: Buffer) => (output = (output + chunk.toString()).slice(-200_000));
  child.stdout!.on('data', keep);
  child.stderr!.on('data', keep);
  let exited = false;
  const exit = new Promise<void>((done) =>
    child.once('exit', () => {
      exited = true;
      done();
    }),
  );

  const url = `http://127.0.0.1:${port}`;
  const stop = async () => {
    if (!exited) {
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await exit;
      clearTimeout(timer);
    }
    await rm(dir, { recursive: true, force: true });
  };

  const deadline = Date.now() + 30_000;
  for (;;) {
    if (exited) {
      await stop();
      throw new Error(`prometheus exited during start:\n${output}`);
    }
    const ready = await fetch(`${url}/-/ready`).then(
      (r) => r.ok,
      () => false,
    );
    if (ready) break;
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`prometheus not ready after 30 s:\n${output}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }

  /** GET, or POST for queries (expressions can outgrow a URL; only some endpoints accept POST). */
  async function api<T>(path: string, params: Record<string, string | string[]> = {}): Promise<T> {
    const form = new URLSearchParams();
    for (const [key, value] of Object.entries(params)) for (const v of [value].flat()) form.append(key, v);
    const res =
      path === '/api/v1/query'
        ? await fetch(`${url}${path}`, { method: 'POST', body: form })
        : await fetch(`${url}${path}${form.size > 0 ? `?${form}` : ''}`);
    const answer = (await res.json()) as ApiAnswer<T>;
    if (answer.status !== 'success') {
      throw new Error(`Prometheus ${path} failed (${answer.errorType}): ${answer.error}\n  params: ${JSON.stringify(params)}`);
    }
    return answer.data;
  }

  return {
    url,
    query: async (expr) => {
      const data = await api<{ resultType: string; result: Sample[] | [number, string] }>('/api/v1/query', { query: expr });
      if (data.resultType === 'scalar') return [{ metric: {}, value: data.result as [number, string] }];
      return data.result as Sample[];
    },
    seriesNames: async (job) =>
      new Set(await api<string[]>('/api/v1/label/__name__/values', { 'match[]': `{job="${job}"}` })),
    labelValues: (label, match) => api<string[]>(`/api/v1/label/${encodeURIComponent(label)}/values`, match ? { 'match[]': match } : {}),
    rules: async () => {
      const data = await api<{
        groups: { name: string; file: string; rules: Omit<RuleState, 'group' | 'file'>[] }[];
      }>('/api/v1/rules');
      return data.groups.flatMap((g) => g.rules.map((r) => ({ ...r, group: g.name, file: g.file })));
    },
    targets: async () => {
      const res = await fetch(`${url}/api/v1/targets`);
      const data = ((await res.json()) as ApiAnswer<{ activeTargets: { labels: Record<string, string>; health: string; lastError: string }[] }>).data;
      return data.activeTargets.map((t) => ({ job: t.labels.job, health: t.health, lastError: t.lastError }));
    },
    logs: () => output,
    stop,
  };
}

/** Unit suffixes OTLP → Prometheus translation appends (Prometheus 3 / Mimir / Grafana Cloud). */
const UNIT_SUFFIX: Record<string, string> = {
  s: 'seconds',
  ms: 'milliseconds',
  us: 'microseconds',
  ns: 'nanoseconds',
  By: 'bytes',
  KiBy: 'kibibytes',
  MiBy: 'mebibytes',
  '%': 'percent',
};

const escapeRegex = (text: string) => text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/**
 * Relabel rules that rename the exporter's series (`pipeline_stage_duration_bucket`: the JS
 * Prometheus exporter adds no unit suffix) to what an OTLP backend stores for the same metric
 * (`pipeline_stage_duration_seconds_bucket`), derived from the `# TYPE` and `# UNIT` lines of a
 * scrape. Rules of the translation: units map to words (`s` → `seconds`, `By` → `bytes`), unit
 * `1` becomes `ratio` on gauges only, annotations like `{call}` add nothing, and counters keep
 * `_total` last. Scope labels (`otel_scope_*`) are dropped: OTLP backends do not promote them by
 * default, so a dashboard must not depend on them.
 */
export function otlpStyleRelabelConfigs(exposition: string): RelabelConfig[] {
  const types = new Map<string, string>();
  const units = new Map<string, string>();
  for (const line of exposition.split('\n')) {
    const type = /^# TYPE (\S+) (\S+)/.exec(line);
    if (type) types.set(type[1], type[2]);
    const unit = /^# UNIT (\S+) (\S+)/.exec(line);
    if (unit) units.set(unit[1], unit[2]);
  }
  const rules: RelabelConfig[] = [];
  for (const [name, type] of types) {
    const unit = units.get(name) ?? '';
    const suffix = unit === '1' ? (type === 'gauge' ? 'ratio' : '') : unit.startsWith('{') ? '' : (UNIT_SUFFIX[unit] ?? '');
    if (!suffix) continue;
    if (type === 'counter') {
      const base = name.replace(/_total$/, '');
      if (base.endsWith(`_${suffix}`)) continue;
      rules.push({ source_labels: ['__name__'], regex: escapeRegex(`${base}_total`), target_label: '__name__', replacement: `${base}_${suffix}_total` });
    } else if (type === 'histogram' || type === 'summary') {
      if (name.endsWith(`_${suffix}`)) continue;
      rules.push({ source_labels: ['__name__'], regex: `${escapeRegex(name)}(_bucket|_sum|_count)`, target_label: '__name__', replacement: `${name}_${suffix}$1` });
    } else {
      if (name.endsWith(`_${suffix}`)) continue;
      rules.push({ source_labels: ['__name__'], regex: escapeRegex(name), target_label: '__name__', replacement: `${name}_${suffix}` });
    }
  }
  rules.push({ action: 'labeldrop', regex: 'otel_scope_.*' });
  return rules;
}
