#!/usr/bin/env bash
# Build the Kubernetes binaries (from the Go module k8s.io/kubernetes pinned in
# cluster/k8s/go.mod), CoreDNS, the pause binary and the volume provisioner
# (cluster/coredns, cluster/pause, cluster/provisioner) into
# $CACHE_DIR/{k8s,coredns,pause,provisioner}/<version>/bin, and (`etcd`, for the kind node
# image only) etcd from cluster/etcd into $CACHE_DIR/etcd/<version>/bin. A finished build
# is reused.
set -euo pipefail
# shellcheck source=cluster/lib/common.sh
source "$(dirname "$0")/lib/common.sh"

command -v go >/dev/null || die "go is not installed (needed to build Kubernetes from its Go module)"

K8S_CMDS=(kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubeadm)

build_k8s() {
	local out="$K8S_BIN_DIR"
	if [ -f "$out/.complete" ]; then
		log "kubernetes $K8S_VERSION binaries cached in $out"
		return
	fi
	local v="${K8S_VERSION#v}" major minor
	major="${v%%.*}"; minor="${v#*.}"; minor="${minor%%.*}"
	local date; date="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
	local ld="-s -w"
	for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
		ld+=" -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor"
		ld+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=$date"
	done
	local pkgs=()
	for c in "${K8S_CMDS[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$c"); done
	log "building kubernetes $K8S_VERSION: ${K8S_CMDS[*]} (cold: ~6-10 min on 2 cores)"
	rm -rf "$out.tmp"; mkdir -p "$out.tmp"
	local t0=$SECONDS
	(cd "$CLUSTER_DIR/k8s" && CGO_ENABLED=0 GOFLAGS="-mod=readonly -buildvcs=false" go build -trimpath -ldflags="$ld" -o "$out.tmp/" "${pkgs[@]}")
	touch "$out.tmp/.complete"
	rm -rf "$out"; mv "$out.tmp" "$out"
	log "kubernetes $K8S_VERSION built in $((SECONDS - t0))s"
}

build_simple() { # name version moddir out pkg...   (OUT_NAME=file: one package, named so)
	local name=$1 version=$2 moddir=$3 out=$4; shift 4
	local dest="$out.tmp/"
	[ -z "${OUT_NAME:-}" ] || dest="$out.tmp/$OUT_NAME"
	if [ -f "$out/.complete" ]; then
		log "$name $version cached in $out"
		return
	fi
	log "building $name $version"
	rm -rf "$out.tmp"; mkdir -p "$out.tmp"
	local t0=$SECONDS
	(cd "$moddir" && CGO_ENABLED=0 GOFLAGS="-mod=readonly -buildvcs=false" go build -trimpath -ldflags="-s -w" -o "$dest" "$@")
	touch "$out.tmp/.complete"
	rm -rf "$out"; mv "$out.tmp" "$out"
	log "$name $version built in $((SECONDS - t0))s"
}

what="${1:-all}"
case "$what" in
	k8s) build_k8s ;;
	coredns) build_simple coredns "$COREDNS_BUILD" "$CLUSTER_DIR/coredns" "$COREDNS_BIN_DIR" . ;;
	pause) build_simple pause "$PAUSE_VERSION" "$CLUSTER_DIR/pause" "$PAUSE_BIN_DIR" . ;;
	provisioner) build_simple provisioner "$PROVISIONER_VERSION" "$CLUSTER_DIR/provisioner" "$PROVISIONER_BIN_DIR" . ;;
	etcd) OUT_NAME=etcd build_simple etcd "$ETCD_VERSION" "$CLUSTER_DIR/etcd" "$ETCD_BIN_DIR" go.etcd.io/etcd/server/v3 ;;
	all)
		build_simple pause "$PAUSE_VERSION" "$CLUSTER_DIR/pause" "$PAUSE_BIN_DIR" .
		build_simple coredns "$COREDNS_BUILD" "$CLUSTER_DIR/coredns" "$COREDNS_BIN_DIR" .
		build_k8s
		build_simple provisioner "$PROVISIONER_VERSION" "$CLUSTER_DIR/provisioner" "$PROVISIONER_BIN_DIR" .
		;;
	*) die "usage: $0 [k8s|coredns|pause|provisioner|etcd|all]" ;;
esac
