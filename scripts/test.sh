#!/usr/bin/env bash
# test.sh — what `make test` and CI run: gofmt, go vet, all Go tests against a
# throwaway PostgreSQL (fuzz targets run their seed corpora as tests), and the
# TimescaleDB compatibility check of the storage SQL.
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
scripts/pg.sh with go test -count=1 -timeout 20m ${GOTESTFLAGS:-} ./...
scripts/timescale/check.sh
