#!/usr/bin/env bash
# Boot the single-node test cluster (see cluster/README.md). Idempotent: a running,
# healthy cluster is checked and reused.
set -euo pipefail
# shellcheck source=cluster/lib/common.sh
source "$(dirname "$0")/lib/common.sh"
need_root
t_start=$SECONDS

"$CLUSTER_DIR/deps.sh"
"$CLUSTER_DIR/docker.sh" start
# Capture, then match: `cmd | grep -q` under pipefail fails when grep exits early and cmd
# gets SIGPIPE (this is how a fresh machine's first `make test` failed).
runtimes="$(docker info --format '{{json .Runtimes}}')"
if ! grep -q "\"$DOCKER_RUNTIME\"" <<<"$runtimes"; then
	die "the running Docker engine lacks the '$DOCKER_RUNTIME' runtime; stop it or start dockerd via cluster/docker.sh"
fi
# The root filesystems (network and disk bound) are made while Go compiles (CPU bound).
mkdir -p "$STATE_DIR"
declare -A rootfs_pid
for name in node base; do
	"$CLUSTER_DIR/rootfs.sh" "$name" >"$STATE_DIR/rootfs-$name.out" 2>"$STATE_DIR/rootfs-$name.log" &
	rootfs_pid[$name]=$!
done
"$CLUSTER_DIR/build-k8s.sh" all
"$CLUSTER_DIR/install-tools.sh"
for name in node base; do
	if ! wait "${rootfs_pid[$name]}"; then
		cat "$STATE_DIR/rootfs-$name.log" >&2
		die "building the $name root filesystem failed"
	fi
	cat "$STATE_DIR/rootfs-$name.log" >&2
done

node_image="$("$CLUSTER_DIR/node-image.sh")"
base_image="$(cat "$STATE_DIR/rootfs-base.out")"
docker tag "$base_image" "$DEBIAN_IMAGE"

# Host sysctls that kubelet would like to change: they must come out of this untouched.
sysctl_keys=(vm/overcommit_memory vm/panic_on_oom kernel/panic kernel/panic_on_oops kernel/keys/root_maxkeys kernel/keys/root_maxbytes net/ipv4/ip_forward)
sysctl_snapshot() { local k; for k in "${sysctl_keys[@]}"; do printf '%s=%s ' "$k" "$(cat "/proc/sys/$k" 2>/dev/null)"; done; }
sysctls_before="$(sysctl_snapshot)"

# --- network: own bridge, no NAT (dockerd runs with --iptables=false), egress rejected
if ! docker network inspect "$DOCKER_NETWORK" >/dev/null 2>&1; then
	log "creating network $DOCKER_NETWORK ($CLUSTER_SUBNET on bridge $BRIDGE_NAME)"
	docker network create --driver bridge --subnet "$CLUSTER_SUBNET" --gateway "$CLUSTER_GATEWAY" \
		-o "com.docker.network.bridge.name=$BRIDGE_NAME" \
		-o com.docker.network.bridge.enable_ip_masquerade=false \
		--label consortium.cluster="$CLUSTER_NAME" "$DOCKER_NETWORK" >/dev/null
fi
egress_rules add

# --- the node container
running_image="$(docker inspect -f '{{if .State.Running}}{{.Config.Image}}{{end}}' "$NODE_CONTAINER" 2>/dev/null || true)"
if [ "$running_image" != "$node_image" ]; then
	if docker inspect "$NODE_CONTAINER" >/dev/null 2>&1; then
		log "replacing node container $NODE_CONTAINER (stopped or from an older image)"
		docker rm -f "$NODE_CONTAINER" >/dev/null
	fi
	docker volume rm -f "$CONTAINERD_VOLUME" >/dev/null 2>&1 || true
	log "starting node container $NODE_CONTAINER ($node_image) at $NODE_IP"
	# (docker's warnings about --dns=127.0.0.1 and ip_forward=0 are intended here: dropped)
	run_out="$(docker run -d --name "$NODE_CONTAINER" --hostname "$NODE_CONTAINER" \
		--label consortium.cluster="$CLUSTER_NAME" \
		--privileged --runtime "$DOCKER_RUNTIME" --cgroupns private \
		--security-opt seccomp=unconfined --security-opt apparmor=unconfined \
		--network "$DOCKER_NETWORK" --ip "$NODE_IP" --dns 127.0.0.1 \
		--tmpfs /run --tmpfs /run/lock --tmpfs /tmp \
		-v "$CONTAINERD_VOLUME:/var/lib/containerd" \
		--restart no \
		"$node_image" 2>&1)" || die "docker run of the node failed: $run_out"
fi

node_exec() { docker exec "$NODE_CONTAINER" "$@"; }
wait_for() { # seconds description command...
	local timeout=$1 what=$2; shift 2
	local deadline=$((SECONDS + timeout))
	until "$@" >/dev/null 2>&1; do
		if [ "$SECONDS" -ge "$deadline" ]; then
			log "timed out after ${timeout}s waiting for $what; node diagnostics follow"
			node_exec systemctl --no-pager --failed >&2 || true
			node_exec journalctl --no-pager -n 40 -u consortium-node-init -u containerd -u etcd -u kube-apiserver -u kubelet >&2 || true
			die "timed out waiting for $what"
		fi
		[ "$(docker inspect -f '{{.State.Running}}' "$NODE_CONTAINER" 2>/dev/null)" = true ] \
			|| { docker logs --tail 30 "$NODE_CONTAINER" >&2 || true; die "node container $NODE_CONTAINER exited"; }
		sleep 1
	done
}

wait_for 120 "containerd in the node" node_exec ctr --namespace k8s.io version

# --- preload every image the cluster runs; nothing is ever pulled
load_image() { # docker image ref
	local ref=$1 full
	full="$(ctr_name "$ref")"
	if [ -n "$(node_exec ctr -n k8s.io images ls -q "name==$full")" ]; then return; fi
	log "loading $ref into the node"
	docker save "$ref" | docker exec -i "$NODE_CONTAINER" ctr -n k8s.io images import --no-unpack=false - >/dev/null
}
for img in "$PAUSE_IMAGE" "$COREDNS_IMAGE" "$DEBIAN_IMAGE"; do load_image "$img"; done

# --- the API server and the kubeconfig for the host
wait_for 180 "the API server" node_exec test -f /etc/kubernetes/admin.conf
mkdir -p "$STATE_DIR"
tmpcfg="$(mktemp "$STATE_DIR/super-admin.XXXXXX")"
trap 'rm -f "$tmpcfg"' EXIT
docker cp "$NODE_CONTAINER:/etc/kubernetes/super-admin.conf" "$tmpcfg" >/dev/null
docker cp "$NODE_CONTAINER:/etc/kubernetes/admin.conf" "$KUBECONFIG_PATH.tmp" >/dev/null
chmod 0600 "$KUBECONFIG_PATH.tmp"
"$KUBECTL" --kubeconfig "$KUBECONFIG_PATH.tmp" config rename-context "$("$KUBECTL" --kubeconfig "$KUBECONFIG_PATH.tmp" config current-context)" "$CLUSTER_NAME" >/dev/null
mv "$KUBECONFIG_PATH.tmp" "$KUBECONFIG_PATH"
wait_for 180 "the API server to be ready" "$KUBECTL" --kubeconfig "$tmpcfg" get --raw /readyz
# kubeadm's admin.conf user is in group kubeadm:cluster-admins; `kubeadm init` would bind it.
"$KUBECTL" --kubeconfig "$tmpcfg" create clusterrolebinding kubeadm:cluster-admins \
	--clusterrole=cluster-admin --group=kubeadm:cluster-admins --dry-run=client -o yaml \
	| "$KUBECTL" --kubeconfig "$tmpcfg" apply -f - >/dev/null
rm -f "$tmpcfg"

# --- CoreDNS, the default StorageClass, node Ready
sed "s|@COREDNS_IMAGE@|$COREDNS_IMAGE|" "$CLUSTER_DIR/manifests/coredns.yaml" | kctl apply -f - >/dev/null
kctl apply -f "$CLUSTER_DIR/manifests/storage.yaml" >/dev/null
wait_for 180 "node $NODE_CONTAINER to register" kctl get node "$NODE_CONTAINER"
# kubelet may not set node-role labels on itself (NodeRestriction); the admin does.
kctl label --overwrite node "$NODE_CONTAINER" node-role.kubernetes.io/control-plane= >/dev/null
log "waiting for node $NODE_CONTAINER to be Ready"
kctl wait --for=condition=Ready "node/$NODE_CONTAINER" --timeout=180s >/dev/null
log "waiting for CoreDNS"
kctl -n kube-system rollout status deployment/coredns --timeout=180s >/dev/null

# --- acceptance: DNS for the API service, a StatefulSet resolving its pods by name
"$CLUSTER_DIR/check.sh"

sysctls_after="$(sysctl_snapshot)"
[ "$sysctls_before" = "$sysctls_after" ] || die "host sysctls changed: before: $sysctls_before after: $sysctls_after"

log "cluster $CLUSTER_NAME is up in $((SECONDS - t_start))s: Kubernetes $K8S_VERSION, node $NODE_CONTAINER ($NODE_IP)"
log "kubeconfig: $KUBECONFIG_PATH   (export KUBECONFIG=$KUBECONFIG_PATH)"
echo "$KUBECONFIG_PATH"
