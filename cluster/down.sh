#!/usr/bin/env bash
# Remove everything cluster/up.sh created: the node container and its containerd volume,
# the Docker network and its bridge, the host iptables rules, the kubeconfig, and the
# dockerd that cluster/docker.sh started (by pid). Caches in $CACHE_DIR are kept.
set -euo pipefail
# shellcheck source=cluster/lib/common.sh
source "$(dirname "$0")/lib/common.sh"
need_root

# A dockerd killed with an earlier session leaves its containers on disk: start one
# (ours, stopped again below) to remove them properly.
if ! docker info >/dev/null 2>&1 && [ -n "$(ls -A "$CACHE_DIR/docker/containers" 2>/dev/null)" ]; then
	"$CLUSTER_DIR/docker.sh" start
fi
if docker info >/dev/null 2>&1; then
	if docker inspect "$NODE_CONTAINER" >/dev/null 2>&1; then
		log "removing node container $NODE_CONTAINER"
		docker rm -f "$NODE_CONTAINER" >/dev/null
	fi
	docker volume rm -f "$CONTAINERD_VOLUME" >/dev/null 2>&1 || true
	if docker network inspect "$DOCKER_NETWORK" >/dev/null 2>&1; then
		log "removing network $DOCKER_NETWORK"
		docker network rm "$DOCKER_NETWORK" >/dev/null
	fi
fi
egress_rules del
if ip link show "$BRIDGE_NAME" >/dev/null 2>&1; then
	log "removing bridge $BRIDGE_NAME"
	ip link delete "$BRIDGE_NAME"
fi
rm -f "$KUBECONFIG_PATH"
if [ "${KEEP_DOCKER:-0}" != 1 ]; then
	"$CLUSTER_DIR/docker.sh" stop
fi
log "cluster $CLUSTER_NAME is down"
