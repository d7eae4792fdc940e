#!/usr/bin/env bash
# Acceptance check of a running test cluster: CoreDNS answers for
# kubernetes.default.svc.cluster.local, a StatefulSet behind a headless Service resolves
# its pods by name and gets writable volumes, and the node container cannot reach beyond
# the host.
set -euo pipefail
# shellcheck source=cluster/lib/common.sh
source "$(dirname "$0")/lib/common.sh"

ns=consortium-cluster-check
# A namespace left by an earlier check may still be terminating: wait for it to go.
kctl delete namespace "$ns" --ignore-not-found --wait=true --timeout=120s >/dev/null
sed "s|@DEBIAN_IMAGE@|$DEBIAN_IMAGE|" "$CLUSTER_DIR/manifests/check.yaml" | kctl apply -f - >/dev/null
kctl -n "$ns" rollout status statefulset/web --timeout=180s >/dev/null

resolve() { # pod name
	local deadline=$((SECONDS + 60))
	until kctl -n "$ns" exec "$1" -- getent hosts "$2" >/dev/null 2>&1; do
		[ "$SECONDS" -lt "$deadline" ] || die "pod $1 cannot resolve $2"
		sleep 1
	done
	log "  $1 resolves $2 -> $(kctl -n "$ns" exec "$1" -- getent hosts "$2" | awk '{print $1}')"
}
log "checking cluster DNS"
resolve web-0 kubernetes.default.svc.cluster.local
resolve web-0 "web-1.web.$ns.svc.cluster.local"
resolve web-1 "web-0.web.$ns.svc.cluster.local"
resolve web-1 "web-1.web"

# Volumes: provisioned by the default StorageClass, writable by a non-root user.
for pod in web-0 web-1; do
	# shellcheck disable=SC2016 # expanded by the pod's shell
	kctl -n "$ns" exec "$pod" -- sh -c 'echo ok >/data/probe && test "$(cat /data/probe)" = ok' \
		|| die "pod $pod cannot write its volume /data"
done
log "  volumes of StorageClass standard bound and writable ($(kctl -n "$ns" get pvc -o name | wc -l) claims)"

# Egress: the host rules that reject everything from the node's bridge but the host
# itself (link-local/metadata addresses included) must be in place. Checked by rule,
# not by probing outside addresses: no packet is ever sent off this machine.
iptables -w -C FORWARD -i "$BRIDGE_NAME" -j "$EGRESS_CHAIN" 2>/dev/null || die "egress rule missing: FORWARD -i $BRIDGE_NAME -j $EGRESS_CHAIN"
iptables -w -C INPUT -i "$BRIDGE_NAME" -d 169.254.0.0/16 -j REJECT 2>/dev/null || die "egress rule missing: INPUT -i $BRIDGE_NAME -d 169.254.0.0/16 -j REJECT"
iptables -w -C "$EGRESS_CHAIN" -j REJECT 2>/dev/null || die "egress rule missing: $EGRESS_CHAIN -j REJECT"
log "  egress rules in place (node may reach only the host)"

kctl delete namespace "$ns" --wait=false >/dev/null
log "cluster checks passed"
