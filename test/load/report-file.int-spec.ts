/**
 * Where a load report goes (issue 14, item 13): `--report` / `--report-from` write the generated
 * tables to docs/capacity/results.md, whole and with their generated-by header, and the charts
 * beside them; they never touch the hand-written docs/capacity.md or docs/capacity/method.md.
 * Synthetic results in a scratch directory: no build, no service (load-harness.int-spec.ts renders
 * a real run).
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { GENERATED_HEADER, markdown, reportPaths, writeReport, type LoadResults } from './report';

const results = (startedAt: string, command: string): LoadResults => ({
  startedAt,
  finishedAt: startedAt,
  command,
  profile: 'short',
  machine: { cpus: 2, cpuModel: 'test cpu', memoryGb: 4, node: 'v24.0.0', load1Before: 0.5, load1After: 0.7 },
  emulator: { latency: 'fixed:100', rate429: 0, hangRate: 0, note: '' },
  scenarios: [],
});

describe('load report file', () => {
  let root: string;
  beforeEach(() => {
    root = mkdtempSync(join(tmpdir(), 'his-report-'));
  });
  afterEach(() => rmSync(root, { recursive: true, force: true }));

  it('goes to docs/capacity/results.md, beside the charts, not to docs/capacity.md', () => {
    const { resultsFile, chartDir } = reportPaths(root);
    expect(relative(root, resultsFile)).toBe(join('docs', 'capacity', 'results.md'));
    expect(relative(root, chartDir)).toBe(join('docs', 'capacity'));
  });

  it('replaces the whole generated file, header first, and leaves the hand-written pages alone', () => {
    const summary = '# Capacity of one small box\n\nWritten by people.\n';
    const method = '# Method\n\nAlso written by people.\n';
    mkdirSync(join(root, 'docs', 'capacity'), { recursive: true });
    writeFileSync(join(root, 'docs', 'capacity.md'), summary);
    writeFileSync(join(root, 'docs', 'capacity', 'method.md'), method);
    writeFileSync(join(root, 'docs', 'capacity', 'results.md'), `${GENERATED_HEADER}\n\nA hand edit that the next report must not keep.\n`);

    const written = writeReport(results('2026-01-02T03:04:05.000Z', 'npm run load -- --scenarios=steady --report'), root, [
      results('2026-01-02T04:00:00.000Z', 'npm run load -- --scenarios=moonshot --cpu-profile'),
    ]);

    const { resultsFile } = reportPaths(root);
    expect(written).toEqual([resultsFile]);
    const text = readFileSync(resultsFile, 'utf8');
    expect(text.startsWith(`${GENERATED_HEADER}\n`)).toBe(true);
    expect(text).not.toContain('hand edit');
    expect(text).toContain('## Run of 2026-01-02T03:04:05.000Z (short profile)');
    expect(text).toContain('Command: `npm run load -- --scenarios=steady --report`');
    expect(text).toContain('### Separate run: `npm run load -- --scenarios=moonshot --cpu-profile`');
    expect(text.endsWith('\n')).toBe(true);
    expect(text).toBe(markdown(results('2026-01-02T03:04:05.000Z', 'npm run load -- --scenarios=steady --report'), [
      results('2026-01-02T04:00:00.000Z', 'npm run load -- --scenarios=moonshot --cpu-profile'),
    ]));
    expect(readFileSync(join(root, 'docs', 'capacity.md'), 'utf8')).toBe(summary);
    expect(readFileSync(join(root, 'docs', 'capacity', 'method.md'), 'utf8')).toBe(method);
  });

  it('creates the folders on a first report', () => {
    writeReport(results('2026-01-02T03:04:05.000Z', 'npm run load -- --report'), root);
    expect(readFileSync(reportPaths(root).resultsFile, 'utf8').startsWith(GENERATED_HEADER)).toBe(true);
  });
});
