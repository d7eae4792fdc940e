# Shared settings and helpers for the cluster scripts. Sourced, never executed.
# shellcheck shell=bash

CLUSTER_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
REPO_ROOT="$(cd "$CLUSTER_DIR/.." && pwd)"

# Everything built or started lives outside the clone, keyed by version.
CACHE_DIR="${CONSORTIUM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/consortium}"
STATE_DIR="${CONSORTIUM_STATE:-$CACHE_DIR/state}"
BIN_DIR="$CACHE_DIR/bin"

# Versions: Kubernetes comes from cluster/k8s/go.mod, CoreDNS from cluster/coredns/go.mod.
K8S_VERSION="$(awk '$1 == "require" && $2 == "k8s.io/kubernetes" {print $3}' "$CLUSTER_DIR/k8s/go.mod")"
COREDNS_VERSION="$(awk '$1 == "require" && $2 == "github.com/coredns/coredns" {print $3}' "$CLUSTER_DIR/coredns/go.mod" 2>/dev/null || true)"
DEBIAN_SUITE="${DEBIAN_SUITE:-bookworm}"
DEBIAN_MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"

# The pause binary is ours: its version is a hash of its source.
PAUSE_VERSION="$(cat "$CLUSTER_DIR/pause/go.mod" "$CLUSTER_DIR/pause/main.go" | sha256sum | cut -c1-12)"

K8S_BIN_DIR="$CACHE_DIR/k8s/$K8S_VERSION/bin"
COREDNS_BIN_DIR="$CACHE_DIR/coredns/$COREDNS_VERSION/bin"
PAUSE_BIN_DIR="$CACHE_DIR/pause/$PAUSE_VERSION/bin"

# Cluster identity. The kubeconfig context name is what tests/e2e/conftest.py checks.
CLUSTER_NAME="${CLUSTER_NAME:-consortium-test}"
NODE_CONTAINER="${CLUSTER_NAME}-control-plane"
DOCKER_NETWORK="${CLUSTER_NAME}-net"
KUBECONFIG_PATH="$STATE_DIR/kubeconfig"

log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }
need_root() { [ "$(id -u)" = 0 ] || die "$0 must run as root (it installs packages and starts dockerd)"; }

# Docker: Debian's client matches Debian's daemon; fall back to whatever is on PATH.
if [ -x /usr/bin/docker ]; then DOCKER="${DOCKER:-/usr/bin/docker}"; else DOCKER="${DOCKER:-docker}"; fi
export DOCKER_BUILDKIT=0 # the classic builder uses local base images and never pulls
DOCKERD_PIDFILE="$STATE_DIR/dockerd.pid"
DOCKER_RUNTIME="consortium-runc" # runc wrapper that drops CAP_SYS_RESOURCE (see docker.sh)
docker() { "$DOCKER" "$@"; }
