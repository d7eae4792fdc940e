#!/usr/bin/env bash
# Load Docker images (default: the node and operator images) into the test cluster
# node's containerd, where pods find them without any pull.
set -euo pipefail
# shellcheck source=cluster/lib/common.sh
source "$(dirname "$0")/lib/common.sh"

[ "$#" -gt 0 ] || die "usage: $0 IMAGE..."
docker info >/dev/null 2>&1 || die "no Docker engine is running; run 'make cluster-up' first"
[ "$(docker inspect -f '{{.State.Running}}' "$NODE_CONTAINER" 2>/dev/null)" = true ] \
	|| die "the test cluster is not running (no container $NODE_CONTAINER); run 'make cluster-up' first"
todo=()
for ref in "$@"; do
	id="$(docker image inspect -f '{{.Id}}' "$ref" 2>/dev/null)" || die "image $ref not found; run 'make images' first"
	full="$(ctr_name "$ref")"
	# Skip an image whose exact content is already loaded under that name.
	loaded="$(docker exec "$NODE_CONTAINER" ctr -n k8s.io images ls "name==$full" 2>/dev/null | awk 'NR > 1 {print $3}')"
	cfg=""
	[ -z "$loaded" ] || cfg="$(docker exec "$NODE_CONTAINER" sh -c "ctr -n k8s.io content get $loaded | jq -r .config.digest" 2>/dev/null || true)"
	if [ "$cfg" = "$id" ]; then
		log "$ref already loaded"
	else
		todo+=("$ref")
	fi
done
if [ "${#todo[@]}" -gt 0 ]; then
	# One archive for all: layers the images share are sent and unpacked once.
	log "loading ${todo[*]} into $NODE_CONTAINER"
	t0=$SECONDS
	docker save "${todo[@]}" | docker exec -i "$NODE_CONTAINER" ctr -n k8s.io images import - >/dev/null
	log "loaded in $((SECONDS - t0))s"
fi
