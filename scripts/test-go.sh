#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Run the Go client's tests (go/) offline against the cofferd and coffer binaries in $1.
# Standard library only: no module download, GOPROXY=off. Caches live under the build tree,
# so that this works without a HOME.
set -euo pipefail
cd "$(dirname "$0")/.."
bindir=${1:-$PWD/build/bin}
cache=$PWD/build/go
mkdir -p "$cache/cache" "$cache/path"
export GOCACHE="$cache/cache" GOPATH="$cache/path" GOPROXY=off GOFLAGS=-mod=mod GOTOOLCHAIN=local
export COFFER_BIN_DIR=$bindir CGO_ENABLED=0
cd go
go vet ./...
# Each package's tests start their own cofferd; the 1 GiB cases run unless COFFER_TEST_BIG=0.
go test -count=1 -timeout 30m ./...
