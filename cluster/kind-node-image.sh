#!/usr/bin/env bash
# Assemble the kind node image for machines without a container registry (what
# `kind build node-image` does, which cannot run offline), from cached binaries:
#   the node rootfs (cluster/rootfs.sh node) + cluster/kind/ (Dockerfile, boot files)
#   + kubeadm, kubelet, kube-proxy (cluster/k8s), kubectl (cluster/install-tools.sh),
#     our volume provisioner (cluster/provisioner)
#   + /kind/version, /kind/manifests/default-storage.yaml (read by kind)
#   + /kind/images/preload.tar: the images kubeadm's static pods name
#     (registry.k8s.io/kube-{apiserver,controller-manager,scheduler}:<k8s>, etcd:<kubeadm's tag>),
#     our CoreDNS and pause; imported into containerd at boot (consortium-kind-images).
# Called by cluster/kind-up.sh. Prints the image reference; a built image is reused.
set -euo pipefail
# shellcheck source=cluster/lib/common.sh
source "$(dirname "$0")/lib/common.sh"

for f in "$K8S_BIN_DIR/.complete" "$COREDNS_BIN_DIR/.complete" "$PAUSE_BIN_DIR/.complete" \
	"$PROVISIONER_BIN_DIR/.complete" "$ETCD_BIN_DIR/.complete"; do
	[ -f "$f" ] || die "missing build output $(dirname "$f"); run cluster/build-k8s.sh all etcd first"
done
[ -x "$KUBECTL" ] || die "kubectl not found at $KUBECTL; run cluster/install-tools.sh first"

# The etcd tag kubeadm puts in its static pod: "<etcd version>-0" (SupportedEtcdVersion).
ETCD_TAG="${ETCD_VERSION#v}-0"
K8S_REGISTRY=registry.k8s.io

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

component_image() { # image binary: FROM scratch, the binary on PATH (kubeadm runs it by name)
	local image=$1 bin=$2 name
	name="$(basename "$bin")"
	if docker image inspect "$image" >/dev/null 2>&1; then return; fi
	log "building $image"
	local ctx="$tmp/img-$name"
	mkdir -p "$ctx"
	cp "$bin" "$ctx/$name"
	printf 'FROM scratch\nCOPY %s /usr/local/bin/%s\nENV PATH=/usr/local/bin\nENTRYPOINT ["/usr/local/bin/%s"]\n' \
		"$name" "$name" "$name" >"$ctx/Dockerfile"
	docker build -q -t "$image" "$ctx" >/dev/null
}

scratch_image "$PAUSE_IMAGE" "$PAUSE_BIN_DIR/pause" pause "$tmp"
scratch_image "$COREDNS_IMAGE" "$COREDNS_BIN_DIR/coredns" coredns "$tmp"
preload=("$PAUSE_IMAGE" "$COREDNS_IMAGE")
for c in kube-apiserver kube-controller-manager kube-scheduler; do
	component_image "$K8S_REGISTRY/$c:$K8S_VERSION" "$K8S_BIN_DIR/$c"
	preload+=("$K8S_REGISTRY/$c:$K8S_VERSION")
done
component_image "$K8S_REGISTRY/etcd:$ETCD_TAG" "$ETCD_BIN_DIR/etcd"
preload+=("$K8S_REGISTRY/etcd:$ETCD_TAG")

base="$("$CLUSTER_DIR/rootfs.sh" node)"
ids="$(for ref in "$base" "${preload[@]}"; do docker image inspect -f '{{.Id}}' "$ref"; done)"
files_hash="$(cd "$CLUSTER_DIR" && find kind node/files/etc/containerd node/files/etc/consortium manifests/storage.yaml -type f -print0 \
	| sort -z | xargs -0 sha256sum | sha256sum | cut -c1-8)"
kubectl_hash="$(sha256sum "$KUBECTL" | cut -c1-8)"
key="$(printf '%s %s %s %s %s' "$ids" "$files_hash" "$K8S_VERSION" "$PROVISIONER_VERSION" "$kubectl_hash" | sha256sum | cut -c1-12)"
image="consortium/kind-node:$K8S_VERSION-$key"
if ! docker image inspect "$image" >/dev/null 2>&1; then
	log "building $image"
	t0=$SECONDS
	ctx="$tmp/node"
	mkdir -p "$ctx/bin" "$ctx/files/etc/containerd" "$ctx/files/etc/consortium" "$ctx/files/kind/manifests" "$ctx/files/kind/images"
	cp "$CLUSTER_DIR/kind/Dockerfile" "$ctx/"
	cp -r "$CLUSTER_DIR/kind/files/." "$ctx/files/"
	for b in kubeadm kubelet kube-proxy; do cp "$K8S_BIN_DIR/$b" "$ctx/bin/"; done
	cp "$KUBECTL" "$ctx/bin/kubectl"
	cp "$PROVISIONER_BIN_DIR/provisioner" "$ctx/bin/local-path-provisioner"
	# Shared with the self-booted node: containerd's settings for these hosts, the sysctl
	# values bind-mounted over /proc/sys, the StorageClass of our provisioner.
	sed "s|@PAUSE_IMAGE@|$(ctr_name "$PAUSE_IMAGE")|" "$CLUSTER_DIR/node/files/etc/containerd/config.toml" \
		>"$ctx/files/etc/containerd/config.toml"
	cp -r "$CLUSTER_DIR/node/files/etc/consortium/sysctl" "$ctx/files/etc/consortium/"
	cp "$CLUSTER_DIR/manifests/storage.yaml" "$ctx/files/kind/manifests/default-storage.yaml"
	echo "$K8S_VERSION" >"$ctx/files/kind/version"
	docker save "${preload[@]}" >"$ctx/files/kind/images/preload.tar"
	docker build -q --build-arg "BASE=$base" -t "$image" "$ctx" >/dev/null
	log "built $image in $((SECONDS - t0))s"
fi
# Older kind node images only fill the disk; one still used by a node stays.
docker images --format '{{.Repository}}:{{.Tag}}' consortium/kind-node | grep -vxF "$image" \
	| xargs -r "$DOCKER" rmi >/dev/null 2>&1 || true
echo "$image"
