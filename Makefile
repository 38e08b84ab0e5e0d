# vmpulse — `make demo` runs the whole system; `make test` tests all of it.
SHELL := /bin/bash
GO ?= go
export GOFLAGS ?= -buildvcs=false
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.version=$(VERSION)
BENCH ?=
FUZZTIME ?= 30s

.PHONY: all build test bench fuzz demo fmt vet clean

all: build

build:
	@mkdir -p bin
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/ ./aggregator/cmd/... ./agent/cmd/... ./scripts/vcsim

## test: formatting, vet, every Go test (integration included, against a
## throwaway PostgreSQL and the in-process vCenter simulator), fuzz seed
## corpora, and the TimescaleDB compatibility check.
test:
	scripts/test.sh

## bench: every benchmark group, or one with BENCH=name (ingest, protocol, spool, agent, api).
bench:
	scripts/bench.sh $(BENCH)

## fuzz: run every fuzz target for FUZZTIME each.
fuzz:
	scripts/fuzz.sh $(FUZZTIME)

demo: build
	scripts/demo.sh

fmt:
	gofmt -w $$(git ls-files '*.go')

vet:
	$(GO) vet ./...

clean:
	rm -rf bin var
