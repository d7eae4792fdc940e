#!/usr/bin/env bash
# Install kind, pinned ($KIND_VERSION, Go module sigs.k8s.io/kind), into
# $CACHE_DIR/kind/<version>/bin from the Go module proxy (~1 min cold), and print its
# path. Called by cluster/kind-up.sh and cluster/kind-down.sh unless KIND names a kind.
set -euo pipefail
# shellcheck source=cluster/lib/common.sh
source "$(dirname "$0")/lib/common.sh"

if [ ! -x "$KIND_BIN_DIR/kind" ]; then
	command -v go >/dev/null || die "go is not installed (needed to install kind from its Go module)"
	log "installing kind $KIND_VERSION (go install sigs.k8s.io/kind@$KIND_VERSION)"
	rm -rf "$KIND_BIN_DIR.tmp"; mkdir -p "$KIND_BIN_DIR.tmp"
	GOBIN="$KIND_BIN_DIR.tmp" CGO_ENABLED=0 GOFLAGS=-buildvcs=false go install "sigs.k8s.io/kind@$KIND_VERSION"
	rm -rf "$KIND_BIN_DIR"; mv "$KIND_BIN_DIR.tmp" "$KIND_BIN_DIR"
fi
echo "$KIND_BIN_DIR/kind"
