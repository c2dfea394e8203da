#!/usr/bin/env bash
# Makes sure the servers the integration tests use answer on this machine:
#   - PostgreSQL on 127.0.0.1:5432 (user postgres, no password; test/support/postgres.ts),
#   - Redis on 127.0.0.1:6379 (test/support/redis.ts).
# Each one that does not answer is started; one that is not installed at all is installed first,
# from Debian's packages (apt-get, as root or through sudo). Quiet and quick when both answer.
# A server given by TEST_POSTGRES_URL / TEST_REDIS_URL is left alone. Run by install-test-deps.sh.
set -euo pipefail

POSTGRES_ETC="${POSTGRES_ETC:-/etc/postgresql}"

log() { echo "start-test-services: $*" >&2; }

as_root() {
  if [[ "$(id -u)" == 0 ]]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1; then
    sudo "$@"
  else
    log "needs root (or sudo) for: $*"
    return 1
  fi
}

apt_updated=""
apt_install() {
  if [[ -z "$apt_updated" ]]; then
    log "apt-get update"
    as_root apt-get update -qq >&2
    apt_updated=1
  fi
  log "apt-get install $*"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >&2
}

# Polls `"$@"` every 0.5 s for up to 30 s.
wait_for() {
  local what="$1"
  shift
  for _ in $(seq 1 60); do
    if "$@"; then return 0; fi
    sleep 0.5
  done
  log "$what is still not answering after 30 s"
  return 1
}

pg_up() { command -v pg_isready >/dev/null 2>&1 && pg_isready -q -h 127.0.0.1 -p 5432 -t 2 >/dev/null 2>&1; }
redis_up() { command -v redis-cli >/dev/null 2>&1 && [[ "$(redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null)" == PONG ]]; }
pg_version() { ls "$POSTGRES_ETC" 2>/dev/null | sort -V | tail -n 1; }

start_postgres() {
  local fresh="" version
  if ! command -v pg_ctlcluster >/dev/null 2>&1 || [[ -z "$(pg_version)" ]]; then
    log "PostgreSQL is not installed: installing Debian's postgresql"
    apt_install postgresql
    fresh=1
  fi
  version="$(pg_version)"
  if [[ -z "$version" || ! -d "$POSTGRES_ETC/$version/main" ]]; then
    log "no PostgreSQL cluster 'main' under $POSTGRES_ETC"
    return 1
  fi
  if [[ -n "$fresh" ]]; then
    # The tests connect as postgres over TCP without a password, as on the development machines.
    # Only a cluster this script just created is opened that way, and only to loopback.
    log "letting loopback TCP connections in without a password (new cluster $version/main only)"
    local hba="$POSTGRES_ETC/$version/main/pg_hba.conf"
    local tmp
    tmp="$(mktemp)"
    printf 'host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust\n' >"$tmp"
    as_root cat "$hba" >>"$tmp"
    as_root cp "$tmp" "$hba" # cp onto the file keeps its owner and mode
    rm -f "$tmp"
    if pg_up; then as_root pg_ctlcluster --skip-systemctl-redirect "$version" main reload; fi
  fi
  if ! pg_up; then
    log "starting PostgreSQL $version (cluster main)"
    as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start || log "pg_ctlcluster start failed"
  fi
  wait_for "PostgreSQL on 127.0.0.1:5432" pg_up
}

start_redis() {
  if ! command -v redis-server >/dev/null 2>&1; then
    log "Redis is not installed: installing Debian's redis-server"
    apt_install redis-server
  fi
  if ! redis_up; then
    log "starting redis-server on 127.0.0.1:6379 (nothing kept on disk)"
    as_root mkdir -p /var/lib/redis /var/log/redis
    as_root redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
      --dir /var/lib/redis --logfile /var/log/redis/ci.log
  fi
  wait_for "Redis on 127.0.0.1:6379" redis_up
}

if [[ -n "${TEST_POSTGRES_URL:-}" ]]; then
  log "TEST_POSTGRES_URL is set: leaving PostgreSQL to it"
elif ! pg_up; then
  start_postgres
fi

if [[ -n "${TEST_REDIS_URL:-}" ]]; then
  log "TEST_REDIS_URL is set: leaving Redis to it"
elif ! redis_up; then
  start_redis
fi
