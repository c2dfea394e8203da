#!/usr/bin/env bash
# Installs what the test suite needs beyond node_modules, from Debian's packages only:
#   - Chromium, for the Swagger UI browser test (playwright-core drives /usr/bin/chromium; it never
#     downloads a browser);
#   - Prometheus, unpacked into .tools/ (scripts/install-prometheus.sh), for the dashboard proof;
#   - nginx (scripts/install-nginx.sh), the load balancer of the distributed load scenario's self-test;
#   - PostgreSQL and Redis answering on 127.0.0.1:5432 / :6379, started (and installed) when they
#     do not (scripts/start-test-services.sh).
# Idempotent and quick when all are present. Run by `npm test` (pretest) and by .ci/run.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

if [[ ! -x /usr/bin/chromium ]]; then
  sudo=""
  if [[ "$(id -u)" != 0 ]]; then
    if command -v sudo >/dev/null 2>&1; then sudo="sudo"; else
      echo "install-test-deps: /usr/bin/chromium is missing; install Debian's 'chromium' package (as root: apt-get install chromium)" >&2
      exit 1
    fi
  fi
  echo "install-test-deps: installing Debian's chromium" >&2
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq >&2
  $sudo apt-get install -y -qq --no-install-recommends chromium >&2
fi

bash "$root/scripts/install-prometheus.sh" >/dev/null

# nginx, for the distributed load scenario's self-test (test/load/distributed-load.int-spec.ts).
bash "$root/scripts/install-nginx.sh" >/dev/null

bash "$root/scripts/start-test-services.sh"
