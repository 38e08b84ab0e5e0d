#!/usr/bin/env bash
# generate.sh — regenerate plugin.pb.go and plugin_grpc.pb.go from plugin.proto.
# Needs protoc (Debian: apt-get install protobuf-compiler); the Go generators
# are installed at the versions the committed code was made with.
set -euo pipefail
cd "$(dirname "$0")"
bin=$(mktemp -d)
trap 'rm -rf "$bin"' EXIT
GOBIN=$bin GOFLAGS=-buildvcs=false go install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
GOBIN=$bin GOFLAGS=-buildvcs=false go install google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.6.2
PATH=$bin:$PATH protoc -I . \
  --go_out=. --go_opt=paths=source_relative \
  --go-grpc_out=. --go-grpc_opt=paths=source_relative \
  plugin.proto
