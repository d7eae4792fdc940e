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
# CoreDNS is built from our main.go (the plugins we use): key its build by that too.
COREDNS_BUILD="$COREDNS_VERSION-$(cat "$CLUSTER_DIR/coredns/go.mod" "$CLUSTER_DIR/coredns/go.sum" "$CLUSTER_DIR/coredns/main.go" | sha256sum | cut -c1-8)"
COREDNS_BIN_DIR="$CACHE_DIR/coredns/$COREDNS_BUILD/bin"
PAUSE_BIN_DIR="$CACHE_DIR/pause/$PAUSE_VERSION/bin"
# The volume provisioner is ours too (cluster/provisioner).
PROVISIONER_VERSION="$(cat "$CLUSTER_DIR/provisioner/go.mod" "$CLUSTER_DIR/provisioner/go.sum" "$CLUSTER_DIR/provisioner/main.go" | sha256sum | cut -c1-12)"
PROVISIONER_BIN_DIR="$CACHE_DIR/provisioner/$PROVISIONER_VERSION/bin"
# etcd for the kind node image's static pod (the version kubeadm expects), from cluster/etcd.
ETCD_VERSION="$(awk '$1 == "require" && $2 == "go.etcd.io/etcd/server/v3" {print $3}' "$CLUSTER_DIR/etcd/go.mod")"
ETCD_BIN_DIR="$CACHE_DIR/etcd/$ETCD_VERSION/bin"
# kind itself, pinned; installed from the Go module proxy (cluster/kind-install.sh).
KIND_VERSION="${KIND_VERSION:-v0.33.0}"
KIND_BIN_DIR="$CACHE_DIR/kind/$KIND_VERSION/bin"

# Cluster identity. The kubeconfig context name is what tests/e2e/conftest.py checks.
CLUSTER_NAME="${CLUSTER_NAME:-consortium-test}"
NODE_CONTAINER="${CLUSTER_NAME}-control-plane"
DOCKER_NETWORK="${CLUSTER_NAME}-net"
KUBECONFIG_PATH="${KUBECONFIG_PATH:-$STATE_DIR/kubeconfig}"

log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }
need_root() { [ "$(id -u)" = 0 ] || die "$0 must run as root (it installs packages and starts dockerd)"; }

# Docker: Debian's client matches Debian's daemon; fall back to whatever is on PATH.
if [ -x /usr/bin/docker ]; then DOCKER="${DOCKER:-/usr/bin/docker}"; else DOCKER="${DOCKER:-docker}"; fi
export DOCKER_BUILDKIT=0 # the classic builder uses local base images and never pulls
DOCKERD_PIDFILE="$STATE_DIR/dockerd.pid"
DOCKER_RUNTIME="consortium-runc" # runc wrapper that drops CAP_SYS_RESOURCE (see docker.sh)
docker() { "$DOCKER" "$@"; }

# Images the cluster itself runs, all built locally (cluster/node-image.sh).
PAUSE_IMAGE="consortium/pause:$PAUSE_VERSION"
COREDNS_IMAGE="consortium/coredns:$COREDNS_BUILD"
scratch_image() { # image binary-path name workdir: a FROM-scratch image running /name
	local image=$1 bin=$2 name=$3 work=$4
	if docker image inspect "$image" >/dev/null 2>&1; then return; fi
	log "building $image"
	local ctx="$work/$name"
	mkdir -p "$ctx"
	cp "$bin" "$ctx/$name"
	printf 'FROM scratch\nCOPY %s /%s\nENTRYPOINT ["/%s"]\n' "$name" "$name" "$name" >"$ctx/Dockerfile"
	docker build -q -t "$image" "$ctx" >/dev/null
}
# Full names as containerd records them after `ctr images import`.
ctr_name() { case "$1" in */*/*) echo "$1" ;; */*) echo "docker.io/$1" ;; *) echo "docker.io/library/$1" ;; esac; }

# The node container's network: a bridge of its own, no NAT, egress rejected.
CLUSTER_SUBNET="${CLUSTER_SUBNET:-172.29.213.0/24}"
CLUSTER_GATEWAY="${CLUSTER_SUBNET%.*}.1"
NODE_IP="${CLUSTER_SUBNET%.*}.2"
BRIDGE_NAME="${BRIDGE_NAME:-consortium0}"
EGRESS_CHAIN="${EGRESS_CHAIN:-CONSORTIUM-EGRESS}"
CONTAINERD_VOLUME="${CLUSTER_NAME}-containerd"
KUBECTL="${KUBECTL:-$BIN_DIR/kubectl}"
kctl() { "$KUBECTL" --kubeconfig "$KUBECONFIG_PATH" "$@"; }
DEBIAN_IMAGE="consortium/debian:$DEBIAN_SUITE"

# Egress rules on the host: the node container may talk to the host and to nothing else.
_egress_rules_one() { # iptables|ip6tables add|del
	local ipt=$1 op=$2
	if [ "$op" = add ]; then
		"$ipt" -w -N "$EGRESS_CHAIN" 2>/dev/null || "$ipt" -w -F "$EGRESS_CHAIN"
		"$ipt" -w -A "$EGRESS_CHAIN" -o "$BRIDGE_NAME" -j RETURN
		"$ipt" -w -A "$EGRESS_CHAIN" -j REJECT
		"$ipt" -w -C FORWARD -i "$BRIDGE_NAME" -j "$EGRESS_CHAIN" 2>/dev/null \
			|| "$ipt" -w -I FORWARD 1 -i "$BRIDGE_NAME" -j "$EGRESS_CHAIN"
		if [ "$ipt" = iptables ]; then # link-local (metadata) addresses, even on the host
			"$ipt" -w -C INPUT -i "$BRIDGE_NAME" -d 169.254.0.0/16 -j REJECT 2>/dev/null \
				|| "$ipt" -w -I INPUT 1 -i "$BRIDGE_NAME" -d 169.254.0.0/16 -j REJECT
		fi
	else
		while "$ipt" -w -D FORWARD -i "$BRIDGE_NAME" -j "$EGRESS_CHAIN" 2>/dev/null; do :; done
		if [ "$ipt" = iptables ]; then
			while "$ipt" -w -D INPUT -i "$BRIDGE_NAME" -d 169.254.0.0/16 -j REJECT 2>/dev/null; do :; done
		fi
		"$ipt" -w -F "$EGRESS_CHAIN" 2>/dev/null || true
		"$ipt" -w -X "$EGRESS_CHAIN" 2>/dev/null || true
	fi
}
egress_rules() { # add|del
	command -v iptables >/dev/null || die "iptables is not installed (apt-get install iptables)"
	_egress_rules_one iptables "$1"
	# The node network has no IPv6; these rules are belt and braces where ip6tables works.
	if command -v ip6tables >/dev/null; then
		_egress_rules_one ip6tables "$1" 2>/dev/null || log "warning: ip6tables rules not applied (no IPv6 netfilter here?)"
	fi
}

# kind clusters (cluster/kind-up.sh): every cluster made here joins one Docker network of
# our own (no NAT, egress rejected like the test cluster's), so clusters side by side
# reach each other's nodes. The kubeconfig of cluster NAME is $STATE_DIR/kind-NAME.kubeconfig.
KIND_NETWORK="${KIND_NETWORK:-consortium-kind}"
KIND_SUBNET="${KIND_SUBNET:-172.29.214.0/24}"
KIND_BRIDGE="${KIND_BRIDGE:-consortiumk0}"
KIND_EGRESS_CHAIN="CONSORTIUM-KIND-EGRESS"
kind_kubeconfig() { echo "$STATE_DIR/kind-$1.kubeconfig"; }
# The host sysctls kubelet would like to change: they must come out of a cluster untouched.
HOST_SYSCTL_KEYS=(vm/overcommit_memory vm/panic_on_oom kernel/panic kernel/panic_on_oops kernel/keys/root_maxkeys kernel/keys/root_maxbytes net/ipv4/ip_forward)
host_sysctls() { local k; for k in "${HOST_SYSCTL_KEYS[@]}"; do printf '%s=%s ' "$k" "$(cat "/proc/sys/$k" 2>/dev/null)"; done; }
