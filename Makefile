# vmpulse — `make demo` runs the whole system; `make test` tests all of it.
SHELL := /bin/bash
GO ?= go
export GOFLAGS ?= -buildvcs=false
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT ?= $(shell git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
LDFLAGS := -X main.version=$(VERSION) -X main.commit=$(COMMIT)
BENCH ?=
FUZZTIME ?= 30s
# The shipped plugins (under plugins/): the aggregator's notifiers and the
# agent's collectors, each set in its own folder with its own SHA256SUMS
# (static binaries: the loader's LD_* variables cannot add unpinned code).
NOTIFIERS := webhook email dingtalk wecom feishu
COLLECTORS := promexec

.PHONY: all build console dist test bench fuzz demo fmt vet clean

all: build

## build: the binaries in bin/, the aggregator with the web console embedded
## (-tags console; the console is built with npm first), and the shipped
## plugins with their SHA256SUMS: the notifiers in bin/plugins/ (for the
## aggregator's plugins.dir), promexec in bin/agent-plugins/ (the agent's).
build: console
	@mkdir -p bin/plugins
	$(GO) build -tags console -ldflags "$(LDFLAGS)" -o bin/ ./aggregator/cmd/... ./agent/cmd/... ./scripts/vcsim
	CGO_ENABLED=0 $(GO) build -ldflags "$(LDFLAGS)" -o bin/plugins/ $(addprefix ./plugins/,$(NOTIFIERS))
	cd bin/plugins && sha256sum $(NOTIFIERS) > SHA256SUMS
	@mkdir -p bin/agent-plugins
	CGO_ENABLED=0 $(GO) build -ldflags "$(LDFLAGS)" -o bin/agent-plugins/ $(addprefix ./plugins/,$(COLLECTORS))
	cd bin/agent-plugins && sha256sum $(COLLECTORS) > SHA256SUMS

## console: the web console (aggregator/web: npm ci when needed, type check,
## Vite build, .gz/.br, size budget) into aggregator/internal/console/dist.
console:
	aggregator/web/scripts/console.sh build

## dist: release archives in var/dist/: the aggregator (console embedded)
## and the agent for linux/amd64 and linux/arm64, the agent for
## windows/amd64; static (CGO_ENABLED=0), version and commit embedded
## (-version prints them), each archive with deploy/ and README.md, and
## SHA256SUMS over the archives (check with: cd var/dist && sha256sum -c SHA256SUMS).
dist: console
	@rm -rf var/dist && mkdir -p var/dist
	@set -e; for arch in amd64 arm64; do \
	  d=var/dist/vmpulse-$(VERSION)-linux-$$arch; mkdir -p $$d; \
	  CGO_ENABLED=0 GOOS=linux GOARCH=$$arch $(GO) build -tags console -trimpath -ldflags "$(LDFLAGS) -s -w" -o $$d/ ./aggregator/cmd/vmpulse-aggregator ./agent/cmd/vmpulse-agent; \
	  cp -r deploy README.md $$d/; \
	  tar -C var/dist --owner=0 --group=0 --numeric-owner -czf $$d.tar.gz $$(basename $$d); rm -rf $$d; \
	  echo "dist: $$d.tar.gz"; \
	done
	@command -v zip >/dev/null || { echo "dist: zip is needed for the Windows archive (apt-get install zip)" >&2; exit 1; }
	@set -e; d=var/dist/vmpulse-agent-$(VERSION)-windows-amd64; mkdir -p $$d; \
	  CGO_ENABLED=0 GOOS=windows GOARCH=amd64 $(GO) build -trimpath -ldflags "$(LDFLAGS) -s -w" -o $$d/ ./agent/cmd/vmpulse-agent; \
	  cp deploy/agent.example.yml README.md $$d/; \
	  (cd var/dist && zip -qr $$(basename $$d).zip $$(basename $$d)); rm -rf $$d; \
	  echo "dist: $$d.zip"
	@cd var/dist && sha256sum *.tar.gz *.zip > SHA256SUMS && echo "dist: var/dist/SHA256SUMS" && cat SHA256SUMS

## test: formatting, vet, every Go test (integration included, against a
## throwaway PostgreSQL and the in-process vCenter simulator), fuzz seed
## corpora, and the TimescaleDB compatibility check.
test:
	scripts/test.sh

## bench: every benchmark group, or one with BENCH=name (ingest, protocol, spool, agent, api, query, realtime, alerts, backup, plugins, console).
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
	rm -rf bin var aggregator/internal/console/dist
