#!/usr/bin/env bash
# Remove what cluster/kind-up.sh made for kind cluster $KIND_CLUSTER (default
# "consortium"): the cluster (kind deletes its node container and volumes) and its
# kubeconfig; once no kind node is left on the shared network, that network, its bridge
# and the host iptables rules too; then the dockerd cluster/docker.sh started, when no
# container is left running (KEEP_DOCKER=1 keeps it). Fails if a host sysctl differs
# from before the first kind cluster. Caches and images stay.
set -euo pipefail
# shellcheck source=cluster/lib/common.sh
source "$(dirname "$0")/lib/common.sh"

KIND_CLUSTER="${KIND_CLUSTER:-consortium}"
KUBECONFIG_FILE="$(kind_kubeconfig "$KIND_CLUSTER")"

# A dockerd killed with an earlier session leaves its containers on disk: start one
# (ours, stopped again below) to remove them properly.
if ! docker info >/dev/null 2>&1 && [ -n "$(ls -A "$CACHE_DIR/docker/containers" 2>/dev/null)" ]; then
	"$CLUSTER_DIR/docker.sh" start
fi
if docker info >/dev/null 2>&1; then
	KIND="${KIND:-$("$CLUSTER_DIR/kind-install.sh")}"
	if grep -qx "$KIND_CLUSTER" <<<"$("$KIND" get clusters 2>/dev/null)"; then
		log "deleting kind cluster $KIND_CLUSTER"
		"$KIND" delete cluster --name "$KIND_CLUSTER" --kubeconfig "$KUBECONFIG_FILE" >/dev/null 2>&1
	fi
	if docker network inspect "$KIND_NETWORK" >/dev/null 2>&1 \
		&& [ "$(docker network inspect -f '{{len .Containers}}' "$KIND_NETWORK")" = 0 ]; then
		log "removing network $KIND_NETWORK"
		docker network rm "$KIND_NETWORK" >/dev/null
	fi
fi
rm -f "$KUBECONFIG_FILE"
if ! docker network inspect "$KIND_NETWORK" >/dev/null 2>&1; then
	[ "$(id -u)" != 0 ] || BRIDGE_NAME="$KIND_BRIDGE" EGRESS_CHAIN="$KIND_EGRESS_CHAIN" egress_rules del
	if ip link show "$KIND_BRIDGE" >/dev/null 2>&1; then
		log "removing bridge $KIND_BRIDGE"
		ip link delete "$KIND_BRIDGE"
	fi
fi

rc=0
if [ -f "$STATE_DIR/kind-sysctls" ]; then
	now="$(host_sysctls)"
	if [ "$now" = "$(cat "$STATE_DIR/kind-sysctls")" ]; then
		log "host sysctls unchanged"
	else
		log "error: host sysctls changed: before: $(cat "$STATE_DIR/kind-sysctls") now: $now"
		rc=1
	fi
	# The last kind cluster is gone: the next kind-up takes a fresh snapshot.
	[ -n "$( (docker ps -aq --filter label=io.x-k8s.kind.cluster) 2>/dev/null)" ] || rm -f "$STATE_DIR/kind-sysctls"
fi
if [ "${KEEP_DOCKER:-0}" != 1 ] && docker info >/dev/null 2>&1 && [ -z "$(docker ps -q)" ]; then
	"$CLUSTER_DIR/docker.sh" stop
fi
log "kind cluster $KIND_CLUSTER is down"
exit "$rc"
