/**
 * Reads a V8 `.cpuprofile` (written by `node --cpu-prof`) and answers where the time went: self
 * time per function and per component (a package under node_modules, a folder of the service,
 * Node internals, GC, idle).
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}

export interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

export interface ProfileSummary {
  file: string;
  /** Wall time covered by the profile, s. */
  durationS: number;
  /** Share of samples not idle (nor a pool worker waiting for work): how busy this thread was. */
  busyShare: number;
  /** Self time by component, ms, busiest first (idle excluded). */
  components: { name: string; ms: number; shareOfBusy: number }[];
  /** Self time by function, ms, busiest first (idle excluded). */
  functions: { name: string; component: string; ms: number; shareOfBusy: number }[];
}

/** Which part of the program a script URL belongs to. */
export function componentOf(url: string, functionName: string): string {
  // A piscina worker waiting for its next task blocks in Atomics.wait inside this function: V8
  // samples it as running, but the thread sleeps.
  if (functionName === 'atomicsWaitLoop' && url.includes('/piscina/')) return '(idle)';
  if (url === '') {
    if (functionName === '(idle)') return '(idle)';
    if (functionName === '(garbage collector)') return 'V8 garbage collector';
    if (functionName === '(program)') return 'V8/native (program)';
    return `native: ${functionName || '(anonymous)'}`;
  }
  if (url.startsWith('node:')) return `node: ${url.slice(5).split('/')[0]}`;
  const nm = url.lastIndexOf('/node_modules/');
  if (nm >= 0) {
    const rest = url.slice(nm + '/node_modules/'.length).split('/');
    return rest[0].startsWith('@') ? `${rest[0]}/${rest[1]}` : rest[0];
  }
  const dist = /\/dist\/(.+)$/.exec(url);
  if (dist) {
    const parts = dist[1].split('/');
    return `service: ${parts.length > 1 ? parts[0] : parts[0].replace(/\.js$/, '')}`;
  }
  return url.replace(/^file:\/\//, '');
}

export function summarizeProfile(profile: CpuProfile, file: string, top = 15): ProfileSummary {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const selfUs = new Map<number, number>();
  // timeDeltas[i] is the time since the previous sample: it belongs to sample i-1.
  for (let i = 0; i < profile.samples.length; i++) {
    const dt = profile.timeDeltas[i + 1] ?? 0;
    selfUs.set(profile.samples[i], (selfUs.get(profile.samples[i]) ?? 0) + Math.max(0, dt));
  }
  const components = new Map<string, number>();
  const functions = new Map<string, { component: string; us: number }>();
  let idle = 0;
  let total = 0;
  for (const [id, us] of selfUs) {
    const node = byId.get(id);
    if (!node) continue;
    const { functionName, url, lineNumber } = node.callFrame;
    const component = componentOf(url, functionName);
    total += us;
    if (component === '(idle)') {
      idle += us;
      continue;
    }
    components.set(component, (components.get(component) ?? 0) + us);
    const short = url ? `${url.split('/').slice(-2).join('/')}:${lineNumber + 1}` : '';
    const key = `${functionName || '(anonymous)'}${short ? ` ${short}` : ''}`;
    const f = functions.get(key) ?? { component, us: 0 };
    f.us += us;
    functions.set(key, f);
  }
  const busy = Math.max(1, total - idle);
  const ms = (us: number) => Math.round(us / 100) / 10;
  const share = (us: number) => Math.round((us / busy) * 1000) / 1000;
  return {
    file,
    durationS: Math.round((profile.endTime - profile.startTime) / 1e5) / 10,
    busyShare: total > 0 ? Math.round(((total - idle) / total) * 1000) / 1000 : 0,
    components: [...components]
      .sort((a, b) => b[1] - a[1])
      .slice(0, top)
      .map(([name, us]) => ({ name, ms: ms(us), shareOfBusy: share(us) })),
    functions: [...functions]
      .sort((a, b) => b[1].us - a[1].us)
      .slice(0, top)
      .map(([name, f]) => ({ name, component: f.component, ms: ms(f.us), shareOfBusy: share(f.us) })),
  };
}

/**
 * Summaries of every profile in `dir`, one per thread (`CPU.<date>.<pid>.<thread>.<seq>.cpuprofile`):
 * thread 0 is the event loop, the others are palette workers.
 */
export function summarizeProfiles(dir: string, top = 15): ProfileSummary[] {
  let files: string[];
  try {
    files = readdirSync(dir).filter((f) => f.endsWith('.cpuprofile'));
  } catch {
    return [];
  }
  return files.sort().map((f) => summarizeProfile(JSON.parse(readFileSync(join(dir, f), 'utf8')) as CpuProfile, f, top));
}
