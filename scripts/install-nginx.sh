#!/usr/bin/env bash
# Makes Debian's nginx available for the distributed load scenario (`npm run load -- --scenarios=distributed`,
# and its self-test in npm test), which runs nginx as its own child process with a private config: the
# package's system service is not needed. Installs the package when it is missing (as root, or through
# sudo), the way install-test-deps.sh installs Chromium; otherwise says how to. Idempotent. Prints the
# binary's path as its last line.
set -euo pipefail

if [[ -n "${NGINX_BIN:-}" && -x "$NGINX_BIN" ]]; then echo "$NGINX_BIN"; exit 0; fi
if [[ -x /usr/sbin/nginx ]]; then echo /usr/sbin/nginx; exit 0; fi
if command -v nginx >/dev/null 2>&1; then command -v nginx; exit 0; fi

sudo=""
if [[ "$(id -u)" != 0 ]]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then sudo="sudo"; else
    echo "install-nginx: nginx is missing; install Debian's 'nginx' package (as root: apt-get install nginx)" >&2
    exit 1
  fi
fi
command -v apt-get >/dev/null 2>&1 || { echo "install-nginx: apt-get not found; install nginx ≥ 1.19.5 and put it on PATH (or set NGINX_BIN)" >&2; exit 1; }
echo "install-nginx: installing Debian's nginx" >&2
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq >&2
$sudo apt-get install -y -qq --no-install-recommends nginx >&2
[[ -x /usr/sbin/nginx ]] || { echo "install-nginx: /usr/sbin/nginx missing after the install" >&2; exit 1; }
/usr/sbin/nginx -v >&2
echo /usr/sbin/nginx
