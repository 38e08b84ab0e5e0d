#!/usr/bin/env bash
# test.sh — what `make test` and CI run: gofmt, go vet, the web console's
# unit tests and build, all Go tests against a throwaway PostgreSQL (fuzz
# targets run their seed corpora as tests; the console's e2e test drives
# Chromium), and the TimescaleDB compatibility check of the storage SQL.
set -euo pipefail
cd "$(dirname "$0")/.."
export GOFLAGS=${GOFLAGS:--buildvcs=false}

unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './node_modules/*'))
if [ -n "$unformatted" ]; then
  echo "gofmt: these files need formatting:" >&2
  echo "$unformatted" >&2
  exit 1
fi
go vet ./...
# The web console: Vitest, then the build (type check, Vite, .gz/.br, and
# the size budget: figure console_initial_js_kb_gz), which the Go tests
# below serve; Chromium for its browser test (aggregator/internal/console/e2e).
aggregator/web/scripts/console.sh chromium
aggregator/web/scripts/console.sh test
go vet -tags console ./aggregator/...
scripts/pg.sh with go test -count=1 -timeout 20m ${GOTESTFLAGS:-} ./...
go test -count=1 -tags console ./aggregator/internal/console
scripts/timescale/check.sh
