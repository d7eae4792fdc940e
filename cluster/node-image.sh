#!/usr/bin/env bash
# Build the images the cluster itself needs, from cached binaries and rootfs tarballs:
#   consortium/pause:<hash>           pod sandbox (cluster/pause)
#   consortium/coredns:<version>      cluster DNS (cluster/coredns)
#   consortium/cluster-node:<k8s>-<hash>  the node container (cluster/node)
# Prints the node image reference on stdout. Images already present are reused.
set -euo pipefail
# shellcheck source=cluster/lib/common.sh
source "$(dirname "$0")/lib/common.sh"

for f in "$K8S_BIN_DIR/.complete" "$COREDNS_BIN_DIR/.complete" "$PAUSE_BIN_DIR/.complete" "$PROVISIONER_BIN_DIR/.complete"; do
	[ -f "$f" ] || die "missing build output $(dirname "$f"); run cluster/build-k8s.sh first"
done

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

scratch_image "$PAUSE_IMAGE" "$PAUSE_BIN_DIR/pause" pause "$tmp"
scratch_image "$COREDNS_IMAGE" "$COREDNS_BIN_DIR/coredns" coredns "$tmp"

base="$("$CLUSTER_DIR/rootfs.sh" node)"
base_id="$(docker image inspect -f '{{.Id}}' "$base")"
files_hash="$(cd "$CLUSTER_DIR/node" && find Dockerfile files -type f -print0 | sort -z | xargs -0 sha256sum | sha256sum | cut -c1-8)"
key="$(printf '%s %s %s %s %s %s' "$base_id" "$files_hash" "$K8S_VERSION" "$PAUSE_IMAGE" "$PROVISIONER_VERSION" "$CLUSTER_NAME" | sha256sum | cut -c1-12)"
image="consortium/cluster-node:$K8S_VERSION-$key"
if ! docker image inspect "$image" >/dev/null 2>&1; then
	log "building $image"
	ctx="$tmp/node"
	mkdir -p "$ctx/bin"
	cp -r "$CLUSTER_DIR/node/files" "$CLUSTER_DIR/node/Dockerfile" "$ctx/"
	for b in kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubeadm; do
		cp "$K8S_BIN_DIR/$b" "$ctx/bin/"
	done
	cp "$PROVISIONER_BIN_DIR/provisioner" "$ctx/bin/local-path-provisioner"
	sed -i "s|@PAUSE_IMAGE@|$(ctr_name "$PAUSE_IMAGE")|" "$ctx/files/etc/containerd/config.toml"
	echo "$CLUSTER_NAME" >"$ctx/files/etc/consortium/cluster-name"
	docker build -q --build-arg "BASE=$base" -t "$image" "$ctx" >/dev/null
fi
# Older node images (from earlier file versions) only fill the disk; one still used by
# a running container stays until the next build.
docker images --format '{{.Repository}}:{{.Tag}}' consortium/cluster-node | grep -vxF "$image" \
	| xargs -r "$DOCKER" rmi >/dev/null 2>&1 || true
echo "$image"
