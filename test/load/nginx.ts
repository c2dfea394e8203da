/**
 * nginx (Debian's package) as the load balancer of the distributed scenario: found on this machine
 * or installed by scripts/install-nginx.sh, run as a child process of the harness with a config of its
 * own in a temporary folder (`-p <dir> -c <conf> -e <log>`, `daemon off`, pid, logs and temp files
 * inside that folder), listening on a free 127.0.0.1 port, and stopped at the end.
 *
 * Open-source nginx has no active health checks: an upstream is taken out passively, for
 * `fail_timeout`, after `max_fails` failed attempts (a refused connection, a timeout), and requests
 * that failed that way go to the next upstream (`proxy_next_upstream error timeout`): always for
 * idempotent methods, and for a POST only when nothing was sent yet (nginx never repeats a POST
 * the first upstream may have acted on). Event streams pass unbuffered.
 */
import { execFileSync, spawn } from 'node:child_process';
import { chmodSync, closeSync, existsSync, mkdtempSync, openSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort, ROOT } from './processes';

export interface NginxUpstreamSettings {
  /** Failed attempts within `failTimeoutS` after which an upstream is left alone for `failTimeoutS`. */
  maxFails: number;
  failTimeoutS: number;
}

export const DEFAULT_UPSTREAM_SETTINGS: NginxUpstreamSettings = { maxFails: 1, failTimeoutS: 5 };

/**
 * How long nginx keeps an idle connection to an instance. The instances' HTTP_KEEP_ALIVE_TIMEOUT_MS
 * must be longer (distributed.ts sets 65 s, the README's advice): with the service's 5 s default a
 * reused connection can meet the instance's close, nginx then counts a failure, and with
 * `max_fails=1` takes the instance out for `fail_timeout` (seen in a run while the other instance was
 * down: 389 requests answered 502 "no live upstreams" in 5 s).
 */
export const UPSTREAM_KEEPALIVE_S = 60;

/** One access-log line per request: what the balancer did with it (upstreams tried, their answers). */
const LOG_FORMAT = "'$msec $status $request_method $upstream_addr|$upstream_status|$request_time|$uri'";

/** The whole nginx.conf of a run: `prefix` holds every file nginx writes. */
export function nginxConfig(opts: { prefix: string; port: number; upstreams: string[]; settings?: NginxUpstreamSettings }): string {
  const { maxFails, failTimeoutS } = opts.settings ?? DEFAULT_UPSTREAM_SETTINGS;
  const p = (name: string) => join(opts.prefix, name);
  return `# Written by the load harness (test/load/nginx.ts) for one run; not a production config.
daemon off;
worker_processes 1;
pid ${p('nginx.pid')};
error_log ${p('error.log')} warn;
events { worker_connections 8192; }
http {
  log_format balancer ${LOG_FORMAT};
  access_log ${p('access.log')} balancer buffer=64k flush=1s;
  client_body_temp_path ${p('temp-body')};
  proxy_temp_path ${p('temp-proxy')};
  fastcgi_temp_path ${p('temp-fastcgi')};
  uwsgi_temp_path ${p('temp-uwsgi')};
  scgi_temp_path ${p('temp-scgi')};
  client_max_body_size 25m;
  # Clients are told 60 s (Keep-Alive: timeout=60) and get 65: they close first, never nginx under them.
  keepalive_timeout 65s 60s;
  keepalive_requests 100000;

  upstream service {
${opts.upstreams.map((u) => `    server ${u} max_fails=${maxFails} fail_timeout=${failTimeoutS}s;`).join('\n')}
    keepalive 64;
    # Idle connections to the instances are dropped after this; the instances must keep theirs open
    # longer (HTTP_KEEP_ALIVE_TIMEOUT_MS above it), or nginx sends a request on a connection the
    # instance is closing, gets a reset, and counts it as a failure of that instance.
    keepalive_timeout ${UPSTREAM_KEEPALIVE_S}s;
  }

  server {
    listen ${`127.0.0.1:${opts.port}`};
    proxy_http_version 1.1;
    proxy_set_header Connection "";
    proxy_set_header Host $host;
    proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
    proxy_connect_timeout 1s;
    # Prefer: wait holds a request up to 60 s.
    proxy_read_timeout 75s;
    proxy_send_timeout 30s;
    # A refused connection or a timeout: the next instance (idempotent requests; a POST only if nothing was sent).
    proxy_next_upstream error timeout;
    proxy_next_upstream_tries 2;
    proxy_next_upstream_timeout 10s;
    # Image bytes pass through memory, never temp files.
    proxy_max_temp_file_size 0;

    location = /lb-health {
      access_log off;
      return 200 "ok\\n";
    }
    # Server-Sent Events: every event as it comes, and streams live as long as the generation.
    location ~ ^/api/v1/generations/[^/]+/events$ {
      proxy_pass http://service;
      proxy_buffering off;
      proxy_cache off;
      proxy_read_timeout 1h;
    }
    location / {
      proxy_pass http://service;
    }
  }
}
`;
}

/**
 * The nginx binary: `NGINX_BIN`, Debian's `/usr/sbin/nginx`, or `nginx` on PATH; when none is there,
 * scripts/install-nginx.sh installs Debian's package (as root, or through sudo) or says how to.
 */
export function findNginx(log: (line: string) => void = () => undefined): string {
  const found = locateNginx();
  if (found) return found;
  log('nginx not found: running scripts/install-nginx.sh (Debian\'s nginx package)');
  try {
    const out = execFileSync('bash', [join(ROOT, 'scripts', 'install-nginx.sh')], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
    const path = out.trim().split('\n').at(-1) ?? '';
    if (path && existsSync(path)) return path;
  } catch {
    // the script has said why on stderr
  }
  throw new Error('nginx is needed for the distributed scenario and could not be installed: run `apt-get install nginx` as root (Debian\'s package), or set NGINX_BIN');
}

function locateNginx(): string | undefined {
  if (process.env.NGINX_BIN) return existsSync(process.env.NGINX_BIN) ? process.env.NGINX_BIN : undefined;
  if (existsSync('/usr/sbin/nginx')) return '/usr/sbin/nginx';
  try {
    const path = execFileSync('sh', ['-c', 'command -v nginx'], { encoding: 'utf8' }).trim();
    return path || undefined;
  } catch {
    return undefined;
  }
}

export interface NginxProcess {
  readonly url: string;
  readonly pid: number;
  readonly prefix: string;
  readonly accessLog: string;
  /** The master and its workers (for their CPU in /proc). */
  pids(): number[];
  /** Stops nginx (SIGQUIT lets it write its buffered log; SIGKILL after 5 s) and, unless `keepFiles`, removes its folder. */
  stop(keepFiles?: boolean): Promise<void>;
}

/** Starts nginx in front of `upstreams` (host:port) and waits until it answers. */
export async function startNginx(opts: { bin: string; upstreams: string[]; settings?: NginxUpstreamSettings }): Promise<NginxProcess> {
  // Its own folder under the system temp dir, traversable by the unprivileged worker user nginx
  // switches to when started as root (mkdtemp makes 0700 folders).
  const prefix = mkdtempSync(join(tmpdir(), 'his-nginx-'));
  chmodSync(prefix, 0o755);
  const port = await freePort();
  const conf = join(prefix, 'nginx.conf');
  writeFileSync(conf, nginxConfig({ prefix, port, upstreams: opts.upstreams, settings: opts.settings }));
  const errorLog = join(prefix, 'error.log');
  const fd = openSync(join(prefix, 'stderr.log'), 'a');
  const child = spawn(opts.bin, ['-p', `${prefix}/`, '-c', conf, '-e', errorLog], { stdio: ['ignore', fd, fd] });
  closeSync(fd);
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const url = `http://127.0.0.1:${port}`;
  const failure = () => `nginx did not start; see ${prefix}:\n${tailOf(join(prefix, 'stderr.log'))}${tailOf(errorLog)}`;
  let gone = false;
  void exited.then(() => (gone = true));
  const deadline = Date.now() + 10_000;
  for (;;) {
    if (gone) throw new Error(failure());
    const ok = await fetch(`${url}/lb-health`, { signal: AbortSignal.timeout(1000) }).then(
      (r) => r.ok,
      () => false,
    );
    if (ok) break;
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      await exited;
      throw new Error(failure());
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  let stopping: Promise<void> | undefined;
  return {
    url,
    pid: child.pid!,
    prefix,
    accessLog: join(prefix, 'access.log'),
    pids: () => [child.pid!, ...childrenOf(child.pid!)],
    stop: (keepFiles = false) =>
      (stopping ??= (async () => {
        if (!gone) {
          child.kill('SIGQUIT');
          let timer: NodeJS.Timeout | undefined;
          await Promise.race([exited, new Promise<void>((r) => (timer = setTimeout(r, 5000)))]);
          clearTimeout(timer);
          if (!gone) {
            child.kill('SIGKILL');
            await exited;
          }
        }
        if (!keepFiles) rmSync(prefix, { recursive: true, force: true });
      })()),
  };
}

function childrenOf(pid: number): number[] {
  try {
    return readdirSync(`/proc/${pid}/task`).flatMap((tid) =>
      readFileSync(`/proc/${pid}/task/${tid}/children`, 'utf8')
        .trim()
        .split(/\s+/)
        .filter(Boolean)
        .map(Number),
    );
  } catch {
    return [];
  }
}

function tailOf(file: string): string {
  try {
    return readFileSync(file, 'utf8').slice(-2000);
  } catch {
    return '';
  }
}

export interface BalancerLogSummary {
  requests: number;
  /** Answers to the client by status. */
  byStatus: Record<string, number>;
  /** Requests nginx sent to a second instance after the first failed (refused, reset, timed out). */
  passedToNextUpstream: number;
  /** Of those, by method (a POST only when nothing had been sent to the first). */
  passedToNextByMethod: Record<string, number>;
  /** 502/504 answers: the instance died while it held the request (no retry for what was sent), or none was up. */
  gatewayErrors: number;
  /** Requests each upstream answered (its last status), by "host:port". */
  byUpstream: Record<string, number>;
}

/** Reads the access log written with the `balancer` format; `fromMs`/`toMs` (Unix ms) bound the lines counted. */
export function summarizeBalancerLog(text: string, fromMs = 0, toMs = Number.POSITIVE_INFINITY): BalancerLogSummary {
  const out: BalancerLogSummary = { requests: 0, byStatus: {}, passedToNextUpstream: 0, passedToNextByMethod: {}, gatewayErrors: 0, byUpstream: {} };
  for (const line of text.split('\n')) {
    const match = /^(\d+\.\d+) (\d{3}) (\S+) (.*)$/.exec(line);
    if (!match) continue;
    const at = Number(match[1]) * 1000;
    if (at < fromMs || at > toMs) continue;
    const [, , status, method, rest] = match;
    const [addrs = '', statuses = ''] = rest.split('|');
    out.requests++;
    out.byStatus[status] = (out.byStatus[status] ?? 0) + 1;
    if (status === '502' || status === '504') out.gatewayErrors++;
    // Several upstreams tried: "a:1, b:2" (", " between tries; " : " joins internal redirects).
    const tried = addrs.split(/, | : /).filter((a) => a && a !== '-');
    if (tried.length > 1) {
      out.passedToNextUpstream++;
      out.passedToNextByMethod[method] = (out.passedToNextByMethod[method] ?? 0) + 1;
    }
    const last = tried.at(-1);
    const lastStatus = statuses.split(/, | : /).at(-1);
    if (last && lastStatus && lastStatus !== '-') out.byUpstream[last] = (out.byUpstream[last] ?? 0) + 1;
  }
  return out;
}
