/**
 * The docs stay short where they promise to and their links keep working (issue 14, item 13):
 * docs/capacity.md is the page a user reads, not a lab notebook; every relative link in README.md
 * and docs/**\/*.md reaches a file, and a `#fragment` reaches a heading (GitHub's anchor rules), so
 * moving a section cannot leave a dead link behind; the generated capacity tables say what
 * generates them. Reads files only: no build, no service.
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { GENERATED_HEADER, reportPaths } from '../load/report';

const ROOT = resolve(__dirname, '..', '..');

/** README.md and every Markdown file under docs/, as paths relative to the repository. */
function markdownFiles(): string[] {
  const docs = readdirSync(join(ROOT, 'docs'), { recursive: true, encoding: 'utf8' })
    .filter((name) => name.endsWith('.md'))
    .map((name) => join('docs', name));
  return ['README.md', ...docs].sort();
}

/** The file's lines with fenced code blocks and inline code spans blanked out (line numbers kept). */
function proseLines(text: string): string[] {
  let fence: string | null = null;
  return text.split('\n').map((line) => {
    const marker = /^\s{0,3}(`{3,}|~{3,})/.exec(line)?.[1];
    if (marker && (fence === null || marker.startsWith(fence))) {
      fence = fence === null ? marker : null;
      return '';
    }
    return fence === null ? line.replace(/(`+)[^`]*?\1/g, '') : '';
  });
}

/** GitHub's anchor for a heading: its text lower-cased, punctuation dropped, spaces as hyphens. */
function slug(heading: string): string {
  return heading
    .replace(/!?\[([^\]]*)\]\([^)]*\)/g, '$1')
    .replace(/<[^>]+>/g, '')
    .trim()
    .toLowerCase()
    .replace(/[^\p{L}\p{M}\p{N}\p{Pc}\- ]/gu, '')
    .replace(/ /g, '-');
}

/** The anchors a Markdown file offers: one per heading (repeats get -1, -2, …), and explicit ids. */
function anchorsOf(text: string): Set<string> {
  const anchors = new Set<string>();
  const seen = new Map<string, number>();
  let fence: string | null = null;
  for (const line of text.split('\n')) {
    const marker = /^\s{0,3}(`{3,}|~{3,})/.exec(line)?.[1];
    if (marker && (fence === null || marker.startsWith(fence))) {
      fence = fence === null ? marker : null;
      continue;
    }
    if (fence !== null) continue;
    const heading = /^\s{0,3}#{1,6}\s+(.*?)(?:\s+#+)?\s*$/.exec(line)?.[1];
    if (heading !== undefined) {
      const base = slug(heading);
      const n = seen.get(base) ?? 0;
      seen.set(base, n + 1);
      anchors.add(n === 0 ? base : `${base}-${n}`);
    }
    for (const m of line.matchAll(/<a\s+(?:name|id)="([^"]+)"/g)) anchors.add(m[1]);
  }
  return anchors;
}

interface Link {
  file: string;
  line: number;
  target: string;
}

/** Every relative link and image of a Markdown file (inline form, outside code). */
function relativeLinks(file: string, text: string): Link[] {
  const links: Link[] = [];
  proseLines(text).forEach((line, i) => {
    for (const m of line.matchAll(/!?\[(?:[^\]]|\\\])*\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)/g)) {
      const target = m[1];
      if (/^[a-z][a-z0-9+.-]*:/i.test(target)) continue; // http:, https:, mailto:
      links.push({ file, line: i + 1, target });
    }
  });
  return links;
}

/** Why a link does not resolve, or null when it does. */
function brokenBecause(link: Link): string | null {
  const [pathPart, fragment] = link.target.split('#', 2) as [string, string | undefined];
  const path = pathPart === '' ? join(ROOT, link.file) : resolve(ROOT, dirname(link.file), decodeURIComponent(pathPart));
  if (relative(ROOT, path).startsWith('..')) return 'points outside the repository';
  if (!existsSync(path)) return 'no such file';
  if (fragment === undefined || fragment === '' || !path.endsWith('.md') || statSync(path).isDirectory()) return null;
  return anchorsOf(readFileSync(path, 'utf8')).has(decodeURIComponent(fragment).toLowerCase()) ? null : `no heading #${fragment} in ${relative(ROOT, path)}`;
}

describe('docs', () => {
  it('docs/capacity.md is the short answer (under 100 lines), not the lab notebook', () => {
    const lines = readFileSync(join(ROOT, 'docs', 'capacity.md'), 'utf8').trimEnd().split('\n');
    expect(lines.length).toBeLessThan(100);
  });

  it('every relative link in README.md and docs/ reaches a file, and its #fragment a heading', () => {
    const files = markdownFiles();
    expect(files).toEqual(expect.arrayContaining(['README.md', join('docs', 'capacity.md'), join('docs', 'capacity', 'results.md')]));
    const links = files.flatMap((file) => relativeLinks(file, readFileSync(join(ROOT, file), 'utf8')));
    // The check looks at something: the README's links into docs/ and the capacity charts are among them.
    expect(links.filter((l) => l.file === 'README.md' && l.target.startsWith('docs/')).length).toBeGreaterThan(5);
    expect(links.some((l) => l.target.endsWith('.svg'))).toBe(true);
    const broken = links.flatMap((link) => {
      const why = brokenBecause(link);
      return why ? [`${link.file}:${link.line} (${link.target}): ${why}`] : [];
    });
    expect(broken).toEqual([]);
  });

  it('finds headings the way GitHub names their anchors', () => {
    expect(slug('Recommended settings for this box')).toBe('recommended-settings-for-this-box');
    expect(slug('Where the CPU goes: one generation')).toBe('where-the-cpu-goes-one-generation');
    expect(slug('Palette work on the main thread vs in the pool')).toBe('palette-work-on-the-main-thread-vs-in-the-pool');
    expect(slug('`GEMINI_MAX_CONCURRENCY` and [quota](x.md) — 2 × 16 MB')).toBe('gemini_max_concurrency-and-quota--2--16-mb');
    expect([...anchorsOf('# A\n\n```\n# not a heading\n```\n## A\n### B ##\n')]).toEqual(['a', 'a-1', 'b']);
    expect(brokenBecause({ file: 'README.md', line: 1, target: 'docs/capacity.md#no-such-heading' })).toMatch(/no heading/);
    expect(brokenBecause({ file: 'README.md', line: 1, target: 'docs/no-such-page.md' })).toBe('no such file');
  });

  it('the generated capacity tables say what generates them', () => {
    const { resultsFile } = reportPaths(ROOT);
    expect(relative(ROOT, resultsFile)).toBe(join('docs', 'capacity', 'results.md'));
    expect(readFileSync(resultsFile, 'utf8').startsWith(`${GENERATED_HEADER}\n`)).toBe(true);
  });
});
