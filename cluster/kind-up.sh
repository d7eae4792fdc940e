#!/usr/bin/env bash
# Create kind cluster $KIND_CLUSTER (default "consortium") and load IMAGE... into it;
# prints its kubeconfig ($STATE_DIR/kind-<name>.kubeconfig, context kind-<name>).
# Idempotent; run it with another KIND_CLUSTER for a second cluster beside the first.
#
# Which node image (KIND_NODE_IMAGE):
#   local   ours, assembled offline by cluster/kind-node-image.sh; nodes join the Docker
#           network $KIND_NETWORK (own bridge, no NAT, egress REJECTed except to the host,
#           link-local included), the node resolver points at loopback and CoreDNS
#           forwards nowhere: no packet and no DNS lookup leaves this machine.
#   stock   kind's own default node image and kind's defaults (network "kind", its CNI).
#   <ref>   that image (e.g. kindest/node:...), kind's defaults otherwise.
#   unset   local when the Docker engine is the one cluster/docker.sh starts (this kind
#           of machine: no registry), kind's own default image otherwise (a laptop).
# kind: $KIND if set, else the pinned $KIND_VERSION installed by cluster/kind-install.sh.
set -euo pipefail
# shellcheck source=cluster/lib/common.sh
source "$(dirname "$0")/lib/common.sh"
t_start=$SECONDS

KIND_CLUSTER="${KIND_CLUSTER:-consortium}"
[[ "$KIND_CLUSTER" =~ ^[a-z0-9][a-z0-9-]*$ ]] || die "KIND_CLUSTER must be lower-case letters, digits and dashes: $KIND_CLUSTER"
NODE="$KIND_CLUSTER-control-plane"
KUBECONFIG_FILE="$(kind_kubeconfig "$KIND_CLUSTER")"
mkdir -p "$STATE_DIR"

mode="${KIND_NODE_IMAGE:-}"
if [ -z "$mode" ]; then
	# No engine running: cluster/docker.sh starts ours, i.e. this kind of machine.
	if ! docker info >/dev/null 2>&1 || [ "$(docker info --format '{{.DefaultRuntime}}')" = "$DOCKER_RUNTIME" ]; then
		mode=local
	else
		mode=stock
	fi
fi
if [ "$mode" = local ]; then
	need_root
	"$CLUSTER_DIR/deps.sh"
fi
"$CLUSTER_DIR/docker.sh" start
KIND="${KIND:-$("$CLUSTER_DIR/kind-install.sh")}"
"$CLUSTER_DIR/install-tools.sh"

if [ "$mode" = local ]; then
	[ "$(docker info --format '{{.DefaultRuntime}}')" = "$DOCKER_RUNTIME" ] \
		|| die "the running Docker engine's default runtime is not '$DOCKER_RUNTIME' (kind cannot pass --runtime); stop it or start dockerd via cluster/docker.sh"
	# The node root filesystem (network and disk bound) is made while Go compiles (CPU bound).
	"$CLUSTER_DIR/rootfs.sh" node >"$STATE_DIR/rootfs-node.out" 2>"$STATE_DIR/rootfs-node.log" &
	rootfs_pid=$!
	"$CLUSTER_DIR/build-k8s.sh" all
	"$CLUSTER_DIR/build-k8s.sh" etcd
	wait "$rootfs_pid" || { cat "$STATE_DIR/rootfs-node.log" >&2; die "building the node root filesystem failed"; }
	node_image="$("$CLUSTER_DIR/kind-node-image.sh")"
	image_args=(--image "$node_image")
	# Our node image's boot files handle this host; the patches make kubeadm fit them:
	# kube-proxy and the volume provisioner run as units in the node, CoreDNS is ours
	# (cluster/manifests/coredns.yaml, no upstream), the CNI config is static (ptp).
	config="$(cat <<'CFG'
kind: Cluster
apiVersion: kind.x-k8s.io/v1alpha4
networking:
  disableDefaultCNI: true
  kubeProxyMode: none
kubeadmConfigPatches:
  - |
    kind: InitConfiguration
    skipPhases: [preflight, addon/kube-proxy, addon/coredns]
  - |
    kind: KubeletConfiguration
    cgroupDriver: cgroupfs
    failCgroupV1: false
CFG
)"
	# The shared network: created once, kept while any kind node is on it.
	if ! docker network inspect "$KIND_NETWORK" >/dev/null 2>&1; then
		log "creating network $KIND_NETWORK ($KIND_SUBNET on bridge $KIND_BRIDGE)"
		docker network create --driver bridge --subnet "$KIND_SUBNET" --gateway "${KIND_SUBNET%.*}.1" \
			-o "com.docker.network.bridge.name=$KIND_BRIDGE" \
			-o com.docker.network.bridge.enable_ip_masquerade=false \
			--label consortium.kind=true "$KIND_NETWORK" >/dev/null
	fi
	BRIDGE_NAME="$KIND_BRIDGE" EGRESS_CHAIN="$KIND_EGRESS_CHAIN" egress_rules add
	export KIND_EXPERIMENTAL_DOCKER_NETWORK="$KIND_NETWORK"
else
	image_args=()
	[ "$mode" = stock ] || image_args=(--image "$mode")
	config=$'kind: Cluster\napiVersion: kind.x-k8s.io/v1alpha4'
fi

# Host sysctls before the first kind cluster; kind-down compares against them too.
[ -f "$STATE_DIR/kind-sysctls" ] || host_sysctls >"$STATE_DIR/kind-sysctls"

if grep -qx "$KIND_CLUSTER" <<<"$("$KIND" get clusters 2>/dev/null)"; then
	log "kind cluster $KIND_CLUSTER exists"
	"$KIND" get kubeconfig --name "$KIND_CLUSTER" >"$KUBECONFIG_FILE"
else
	log "creating kind cluster $KIND_CLUSTER (node image: ${image_args[1]:-kind default})"
	t0=$SECONDS
	"$KIND" create cluster --name "$KIND_CLUSTER" "${image_args[@]}" --kubeconfig "$KUBECONFIG_FILE" \
		--wait 180s --config - <<<"$config"
	log "kind cluster $KIND_CLUSTER created in $((SECONDS - t0))s"
fi
chmod 0600 "$KUBECONFIG_FILE"
kctl_kind() { "$KUBECTL" --kubeconfig "$KUBECONFIG_FILE" "$@"; }

if [ "$mode" = local ]; then
	sed "s|@COREDNS_IMAGE@|$COREDNS_IMAGE|" "$CLUSTER_DIR/manifests/coredns.yaml" | kctl_kind apply -f - >/dev/null
	log "waiting for CoreDNS"
	kctl_kind -n kube-system rollout status deployment/coredns --timeout=180s >/dev/null
fi

if [ "$#" -gt 0 ]; then CLUSTER_NAME="$KIND_CLUSTER" "$CLUSTER_DIR/load.sh" "$@"; fi

if [ "$mode" = local ]; then
	# Acceptance, as for the test cluster: DNS, a StatefulSet with volumes, egress rules.
	docker tag "$("$CLUSTER_DIR/rootfs.sh" base)" "$DEBIAN_IMAGE"
	CLUSTER_NAME="$KIND_CLUSTER" "$CLUSTER_DIR/load.sh" "$DEBIAN_IMAGE"
	KUBECONFIG_PATH="$KUBECONFIG_FILE" BRIDGE_NAME="$KIND_BRIDGE" EGRESS_CHAIN="$KIND_EGRESS_CHAIN" "$CLUSTER_DIR/check.sh"
	sysctls_now="$(host_sysctls)"
	[ "$sysctls_now" = "$(cat "$STATE_DIR/kind-sysctls")" ] \
		|| die "host sysctls changed: before: $(cat "$STATE_DIR/kind-sysctls") now: $sysctls_now"
	log "host sysctls unchanged"
fi

log "kind cluster $KIND_CLUSTER is up in $((SECONDS - t_start))s (node $NODE, $(docker inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' "$NODE"))"
log "kubeconfig: $KUBECONFIG_FILE   (E2E_KUBECONFIG=$KUBECONFIG_FILE make test-e2e)"
echo "$KUBECONFIG_FILE"
