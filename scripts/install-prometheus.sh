#!/usr/bin/env bash
# Makes a Prometheus binary available for the dashboard proof test without installing a system
# service: Debian's package is downloaded and unpacked into .tools/prometheus (gitignored).
# Idempotent. Prints the binary's path as its last line.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dest="$root/.tools/prometheus"
bin="$dest/usr/bin/prometheus"

if [[ -x "$bin" ]]; then
  echo "$bin"
  exit 0
fi
if command -v prometheus >/dev/null 2>&1; then
  command -v prometheus
  exit 0
fi

command -v apt-get >/dev/null 2>&1 || { echo "install-prometheus: apt-get not found; install Prometheus ≥ 2.42 and put it on PATH" >&2; exit 1; }
sudo=""
if [[ "$(id -u)" != 0 ]] && command -v sudo >/dev/null 2>&1; then sudo="sudo"; fi

work="$(mktemp -d)"
chmod 755 "$work" # apt downloads as the _apt user when it can
trap 'rm -rf "$work"' EXIT
cd "$work"
# `apt-get download` needs package lists; refresh them only when the package is unknown.
if ! apt-cache show prometheus >/dev/null 2>&1; then
  echo "install-prometheus: apt-get update" >&2
  $sudo apt-get update -qq >&2
fi
apt-get download prometheus >&2
mkdir -p "$dest"
dpkg-deb -x ./prometheus_*.deb "$dest"
[[ -x "$bin" ]] || { echo "install-prometheus: $bin missing after unpacking" >&2; exit 1; }
"$bin" --version >&2
echo "$bin"
