import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { packageRoot } from '../support/service-process';

const SCRIPT = join(packageRoot(), 'scripts', 'start-test-services.sh');
const TOOLS = ['seq', 'sleep', 'ls', 'sort', 'tail', 'mktemp', 'cat', 'cp', 'rm', 'env'];

/**
 * scripts/start-test-services.sh against stand-ins: the script runs with a PATH of shims only
 * (pg_isready, pg_ctlcluster, redis-cli, redis-server, apt-get, mkdir, id) that record their
 * calls and keep a fake "up" state, so every branch runs here without touching the machine's
 * real PostgreSQL and Redis, which other tests use.
 */
describe('scripts/start-test-services.sh', () => {
  let dir: string;
  let bin: string;
  let state: string;
  let etc: string;

  const shim = (name: string, body: string, into = bin) => {
    const file = join(into, name);
    writeFileSync(file, `#!/bin/bash\necho "${name} $*" >> "${join(state, 'calls')}"\n${body}\n`);
    chmodSync(file, 0o755);
  };
  const installPostgres = (into = bin) => {
    shim('pg_isready', `[[ -e "${state}/pg_up" ]] || exit 2`, into);
    shim('pg_ctlcluster', `[[ "$4" == start ]] && /usr/bin/touch "${state}/pg_up"; exit 0`, into);
  };
  const installRedis = (into = bin) => {
    shim('redis-cli', `[[ -e "${state}/redis_up" ]] && echo PONG || exit 1`, into);
    shim('redis-server', `/usr/bin/touch "${state}/redis_up"`, into);
  };
  const makeCluster = () => {
    mkdirSync(join(etc, '15', 'main'), { recursive: true });
    writeFileSync(join(etc, '15', 'main', 'pg_hba.conf'), 'local all postgres peer\nhost all all 127.0.0.1/32 scram-sha-256\n');
  };
  const run = (env: Record<string, string> = {}) => {
    const result = spawnSync('/bin/bash', [SCRIPT], {
      env: { PATH: bin, POSTGRES_ETC: etc, ...env },
      encoding: 'utf8',
      timeout: 60_000,
    });
    const calls = existsSync(join(state, 'calls')) ? readFileSync(join(state, 'calls'), 'utf8').trim().split('\n') : [];
    return { code: result.status, stderr: result.stderr, actions: calls.filter((c) => !/^(pg_isready|redis-cli|id) /.test(c)) };
  };

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'his-start-services-'));
    bin = join(dir, 'bin');
    state = join(dir, 'state');
    etc = join(dir, 'etc-postgresql');
    for (const d of [bin, state]) mkdirSync(d);
    for (const tool of TOOLS) symlinkSync(`/usr/bin/${tool}`, join(bin, tool));
    shim('id', 'echo 0');
    shim('mkdir', 'exit 0');
    // apt-get "installs" a package by putting its shims on PATH (and, for postgresql, a cluster).
    shim(
      'apt-get',
      `case "$*" in
         *install*postgresql*) /bin/mkdir -p "${etc}/15/main"; printf 'local all postgres peer\\n' > "${etc}/15/main/pg_hba.conf"; /usr/bin/cp "${dir}/pkg/pg/"* "${bin}/";;
         *install*redis-server*) /usr/bin/cp "${dir}/pkg/redis/"* "${bin}/";;
       esac`,
    );
    mkdirSync(join(dir, 'pkg', 'pg'), { recursive: true });
    mkdirSync(join(dir, 'pkg', 'redis'), { recursive: true });
    installPostgres(join(dir, 'pkg', 'pg'));
    installRedis(join(dir, 'pkg', 'redis'));
  });

  afterEach(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  it('does nothing and says nothing when both answer', () => {
    installPostgres();
    installRedis();
    makeCluster();
    writeFileSync(join(state, 'pg_up'), '');
    writeFileSync(join(state, 'redis_up'), '');
    expect(run()).toEqual({ code: 0, stderr: '', actions: [] });
  });

  it('starts both when they are installed but not answering, with the machine commands', () => {
    installPostgres();
    installRedis();
    makeCluster();
    const { code, stderr, actions } = run();
    expect(code).toBe(0);
    expect(actions).toEqual([
      'pg_ctlcluster --skip-systemctl-redirect 15 main start',
      'mkdir -p /var/lib/redis /var/log/redis',
      'redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save  --appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log',
    ]);
    expect(stderr).toMatch(/starting PostgreSQL 15/);
    expect(stderr).toMatch(/starting redis-server/);
    // The existing cluster's authentication is left as it was.
    expect(readFileSync(join(etc, '15', 'main', 'pg_hba.conf'), 'utf8')).not.toContain('trust');
  });

  it("installs Debian's packages when they are missing, opens the new cluster to loopback, and starts both", () => {
    const { code, stderr, actions } = run();
    expect(code).toBe(0);
    expect(actions).toEqual([
      'apt-get update -qq',
      'apt-get install -y -qq --no-install-recommends postgresql',
      'pg_ctlcluster --skip-systemctl-redirect 15 main start',
      'apt-get install -y -qq --no-install-recommends redis-server',
      'mkdir -p /var/lib/redis /var/log/redis',
      expect.stringMatching(/^redis-server --daemonize yes /),
    ]);
    expect(stderr).toMatch(/PostgreSQL is not installed/);
    expect(stderr).toMatch(/Redis is not installed/);
    expect(readFileSync(join(etc, '15', 'main', 'pg_hba.conf'), 'utf8')).toBe(
      'host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust\nlocal all postgres peer\n',
    );
  });

  it('leaves servers given by TEST_POSTGRES_URL / TEST_REDIS_URL alone', () => {
    const { code, stderr, actions } = run({ TEST_POSTGRES_URL: 'postgres://db.test/x', TEST_REDIS_URL: 'redis://cache.test' });
    expect(code).toBe(0);
    expect(actions).toEqual([]);
    expect(stderr).toMatch(/TEST_POSTGRES_URL is set/);
    expect(stderr).toMatch(/TEST_REDIS_URL is set/);
  });
});
