#!/usr/bin/env bash
# For machines with kind: create a kind cluster (name $KIND_CLUSTER) and load the
# locally built images into it. Writes the kubeconfig kind prints into the default place;
# the context is "kind-$KIND_CLUSTER", which tests/e2e accepts.
set -euo pipefail
# shellcheck source=cluster/lib/common.sh
source "$(dirname "$0")/lib/common.sh"

KIND="${KIND:-kind}"
KIND_CLUSTER="${KIND_CLUSTER:-consortium}"
command -v "$KIND" >/dev/null 2>&1 || die "kind is not installed (https://kind.sigs.k8s.io); use 'make cluster-up' for the built-in test cluster"
[ "$#" -gt 0 ] || die "usage: $0 IMAGE..."

if grep -qx "$KIND_CLUSTER" <<<"$("$KIND" get clusters 2>/dev/null)"; then
	log "kind cluster $KIND_CLUSTER exists"
else
	log "creating kind cluster $KIND_CLUSTER"
	"$KIND" create cluster --name "$KIND_CLUSTER" --wait 180s
fi
for ref in "$@"; do
	log "loading $ref into kind cluster $KIND_CLUSTER"
	"$KIND" load docker-image --name "$KIND_CLUSTER" "$ref"
done
log "kind cluster $KIND_CLUSTER ready: run 'E2E_KUBECONFIG=\$HOME/.kube/config make test-e2e' (context kind-$KIND_CLUSTER)"
