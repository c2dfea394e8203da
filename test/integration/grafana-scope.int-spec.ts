/**
 * The alert rules and dashboards under grafana/ concern this service only, in a Prometheus or Mimir
 * that holds many services (whose http_server_request_duration or nodejs_eventloop_delay_p99 look
 * just like ours):
 * - every alert rule is kept to this service's jobs (those exporting pipeline_queue_capacity), and
 *   has its own `promtool test rules` file in grafana/alerts/tests/ that makes it fire for this
 *   service and not for `job="checkout-svc"` with the same series; promtool runs each here;
 * - every dashboard query selects `job=~"$job"`, and the job variable's "All" is the jobs it found,
 *   not `.*`.
 * Also the panel units the review found wrong: memory in bytes (not decmbytes over 1024²), and CPU
 * "% of one core" and "% of all cores" on separate axes.
 */
import { execFile } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { parse } from 'yaml';
import { promtoolBinary } from '../support/prometheus';

const ROOT = resolve(__dirname, '..', '..');
const ALERT_DIR = join(ROOT, 'grafana', 'alerts');
const TEST_DIR = join(ALERT_DIR, 'tests');
const DASHBOARD_DIR = join(ROOT, 'grafana', 'dashboards');
const run = promisify(execFile);

interface Rule {
  alert?: string;
  record?: string;
  expr: string;
}
interface RuleFile {
  groups: { name: string; rules: Rule[] }[];
}
interface RuleTestFile {
  rule_files: string[];
  tests: { input_series: { series: string }[]; alert_rule_test?: { alertname: string; exp_alerts?: unknown[] }[] }[];
}
interface Panel {
  title?: string;
  panels?: Panel[];
  targets?: { expr?: string; refId: string }[];
  fieldConfig?: { defaults?: { unit?: string; custom?: Record<string, unknown> }; overrides?: { matcher: { id: string; options: string }; properties: { id: string; value: unknown }[] }[] };
}
interface Dashboard {
  panels: Panel[];
  templating: { list: { name: string; includeAll?: boolean; allValue?: string }[] };
}

const ruleFiles = readdirSync(ALERT_DIR).filter((f) => /\.ya?ml$/.test(f));
const rules = ruleFiles.flatMap((f) => (parse(readFileSync(join(ALERT_DIR, f), 'utf8')) as RuleFile).groups.flatMap((g) => g.rules));
const alerts = rules.filter((r) => r.alert).map((r) => r as Rule & { alert: string });
const dashboards = readdirSync(DASHBOARD_DIR).filter((f) => f.endsWith('.json'));
const SCOPE = /and on \(job(, instance)?\) (group by \(job\) \()?\{__name__="pipeline_queue_capacity"\}/;

function allPanels(panels: Panel[]): Panel[] {
  return panels.flatMap((p) => [p, ...allPanels(p.panels ?? [])]);
}

describe('Alert rules are scoped to this service', () => {
  it('there are alert rules, none without a scope to this service’s jobs', () => {
    expect(alerts.length).toBeGreaterThanOrEqual(8);
    // Scoped by a join on pipeline_queue_capacity, or by dividing by it (PipelineQueueSaturated).
    const unscoped = alerts.filter((r) => !SCOPE.test(r.expr) && !/\/ on \(job, instance\)\s+max by \(job, instance\) \(\{__name__="pipeline_queue_capacity"\}\)/.test(r.expr));
    expect(unscoped.map((r) => r.alert)).toEqual([]);
  });

  it('promtool check rules accepts every rule file', async () => {
    for (const file of ruleFiles) {
      const { stdout } = await run(promtoolBinary(), ['check', 'rules', join(ALERT_DIR, file)]);
      expect(stdout).toContain('SUCCESS');
    }
  });

  it.each(alerts.map((r) => r.alert))('%s has a promtool test that fires it for this service and not for checkout-svc', async (alert) => {
    const file = join(TEST_DIR, `${alert}.test.yaml`);
    expect(existsSync(file)).toBe(true);
    const spec = parse(readFileSync(file, 'utf8')) as RuleTestFile;
    expect(spec.rule_files.map((f) => resolve(TEST_DIR, f))).toEqual(ruleFiles.map((f) => join(ALERT_DIR, f)));
    const cases = spec.tests.flatMap((t) => t.alert_rule_test ?? []).filter((c) => c.alertname === alert);
    expect(cases.some((c) => (c.exp_alerts ?? []).length > 0)).toBe(true);
    // Another service's series are in the input, and no expected alert is theirs.
    expect(spec.tests.some((t) => t.input_series.some((s) => s.series.includes('job="checkout-svc"')))).toBe(true);
    expect(JSON.stringify(cases)).not.toContain('checkout-svc');

    const result = await run(promtoolBinary(), ['test', 'rules', file]).then(
      ({ stdout }) => ({ ok: true, out: stdout }),
      (error: { stdout?: string; stderr?: string }) => ({ ok: false, out: `${error.stdout ?? ''}${error.stderr ?? ''}` }),
    );
    expect(result).toEqual({ ok: true, out: expect.stringContaining('SUCCESS') });
  });

  it('no test file is left without its alert', () => {
    const names = new Set(alerts.map((r) => `${r.alert}.test.yaml`));
    expect(readdirSync(TEST_DIR).filter((f) => !names.has(f))).toEqual([]);
  });
});

describe.each(dashboards)('Dashboard %s', (file) => {
  const dashboard = JSON.parse(readFileSync(join(DASHBOARD_DIR, file), 'utf8')) as Dashboard;
  const queries = allPanels(dashboard.panels).flatMap((p) => (p.targets ?? []).filter((t) => t.expr).map((t) => ({ panel: p.title, expr: t.expr! })));

  it('selects the service’s job in every series selector of every query', () => {
    expect(queries.length).toBeGreaterThan(0);
    const unscoped = queries.flatMap(({ panel, expr }) =>
      (expr.match(/\{[^{}]*__name__[^{}]*\}/g) ?? ['(no selector)']).filter((sel) => !sel.includes('job=~"$job"')).map((sel) => `${panel}: ${sel}`),
    );
    expect(unscoped).toEqual([]);
  });

  it('offers as "All" the jobs and instances it found, never every job (.*)', () => {
    for (const name of ['job', 'instance']) {
      const variable = dashboard.templating.list.find((v) => v.name === name)!;
      expect([name, variable.allValue]).toEqual([name, undefined]);
    }
  });
});

describe('Resource panels', () => {
  const panels = allPanels((JSON.parse(readFileSync(join(DASHBOARD_DIR, 'pipeline-resource-usage.json'), 'utf8')) as Dashboard).panels);

  it('memory is plotted in bytes, as exported (Grafana scales to MiB/GiB)', () => {
    const memory = panels.find((p) => p.title === 'Memory')!;
    expect(memory.fieldConfig?.defaults?.unit).toBe('bytes');
    for (const t of memory.targets ?? []) expect(t.expr).not.toMatch(/\/\s*1024/);
  });

  it('CPU: "% of one core" and "% of all cores" are on separate axes', () => {
    const cpu = panels.find((p) => p.title === 'CPU')!;
    const perCore = cpu.targets!.find((t) => /process_cpu_time/.test(t.expr!))!;
    const ofAll = cpu.targets!.find((t) => /process_cpu_utilization/.test(t.expr!))!;
    const override = cpu.fieldConfig?.overrides?.find((o) => o.matcher.id === 'byFrameRefID' && o.matcher.options === ofAll.refId);
    expect(override?.properties).toEqual(expect.arrayContaining([{ id: 'custom.axisPlacement', value: 'right' }]));
    expect(perCore.refId).not.toBe(ofAll.refId);
    expect(cpu.fieldConfig?.defaults?.custom?.axisPlacement ?? 'auto').not.toBe('right');
  });
});
