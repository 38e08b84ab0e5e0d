#!/usr/bin/env bash
# console.sh — build and test the web console (aggregator/web).
#
#   console.sh deps       npm ci, unless node_modules already matches package-lock.json
#   console.sh build      deps, then type check, vite build, .gz/.br and the size budget
#                         (prints figure: console_initial_js_kb_gz); output in
#                         aggregator/internal/console/dist, embedded by go build -tags console
#   console.sh test       deps, Vitest, then build
#   console.sh chromium   install Debian's chromium with apt when /usr/bin/chromium is
#                         missing and we are root (the Go e2e test drives it); else say so
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf 'console: %s\n' "$*" >&2; }

deps() {
  command -v npm >/dev/null || { log "npm is needed to build the console (Node 20+)"; exit 1; }
  # npm ci always in CI; locally only when the lock changed since the last install.
  if [ -n "${CI:-}" ] || [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
    log "npm ci"
    npm ci --no-audit --no-fund --loglevel=error
  fi
}

case "${1:-build}" in
  deps) deps ;;
  build)
    deps
    npm run --silent build
    ;;
  test)
    deps
    npx vitest run
    npm run --silent build
    ;;
  chromium)
    if [ -x "${VMPULSE_CHROMIUM:-/usr/bin/chromium}" ]; then
      exit 0
    fi
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
      log "installing Debian's chromium for the end-to-end test"
      (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) >&2
    else
      log "no /usr/bin/chromium and not root: the console's browser test will skip (apt-get install chromium)"
    fi
    ;;
  *)
    echo "usage: $0 deps|build|test|chromium" >&2
    exit 2
    ;;
esac
