#!/usr/bin/env bash
# Build the node and operator images locally:
#   1. base: a debootstrap'd Debian bookworm with python3.11 (cluster/rootfs.sh base)
#   2. wheels: `pip wheel . -w DIR` on the host (the project and all its dependencies)
#   3. docker build of images/node.Dockerfile and images/operator.Dockerfile, offline.
# Env: PY (python used for pip wheel), NODE_IMAGE, OPERATOR_IMAGE.
set -euo pipefail
# shellcheck source=cluster/lib/common.sh
source "$(dirname "$0")/../cluster/lib/common.sh"

PY="${PY:-.venv/bin/python}"
NODE_IMAGE="${NODE_IMAGE:-consortium/node:dev}"
OPERATOR_IMAGE="${OPERATOR_IMAGE:-consortium/operator:dev}"
IMAGES_DIR="$REPO_ROOT/images"
[ -x "$PY" ] || PY="$(command -v python3)"

"$CLUSTER_DIR/deps.sh"
"$CLUSTER_DIR/docker.sh" start
base="$("$CLUSTER_DIR/rootfs.sh" base)"

# The wheels must suit the image's python (Debian bookworm: CPython 3.11).
pyver="$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
[ "$pyver" = 3.11 ] || die "$PY is Python $pyver; the images run Debian bookworm's Python 3.11, build wheels with a 3.11 interpreter (PY=...)"
dist="$("$PY" -c 'import tomllib; print(tomllib.load(open("'"$REPO_ROOT"'/pyproject.toml", "rb"))["project"]["name"])')"

ctx="$(mktemp -d)"
trap 'rm -rf "$ctx"' EXIT
mkdir -p "$ctx/deps" "$ctx/project"
log "building wheels for $dist and its dependencies"
t0=$SECONDS
# Reproducible wheels (same bytes for the same source), so docker's layer cache holds.
SOURCE_DATE_EPOCH="$(git -C "$REPO_ROOT" log -1 --format=%ct 2>/dev/null || echo 1580601600)" \
	"$PY" -m pip wheel -q --disable-pip-version-check "$REPO_ROOT" -w "$ctx/deps" >&2
project_wheel="$(find "$ctx/deps" -maxdepth 1 -name "${dist//-/_}-*.whl" -print -quit)"
[ -n "$project_wheel" ] || die "pip wheel produced no wheel for $dist"
mv "$project_wheel" "$ctx/project/"
log "wheels built in $((SECONDS - t0))s ($(find "$ctx" -name '*.whl' | wc -l) wheels)"

for spec in "node:$NODE_IMAGE" "operator:$OPERATOR_IMAGE"; do
	kind="${spec%%:*}" image="${spec#*:}"
	log "building $image"
	docker build -q -f "$IMAGES_DIR/$kind.Dockerfile" --build-arg "BASE=$base" \
		--label "consortium.revision=$(git -C "$REPO_ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)" \
		-t "$image" "$ctx" >/dev/null
	# The image must start its console script as the unprivileged user.
	docker run --rm --network none --entrypoint sh "$image" -c \
		"test \"\$(id -u)\" = 10001 && command -v consortium-$kind >/dev/null" \
		|| die "$image: consortium-$kind missing or not running as uid 10001"
done
log "images built: $NODE_IMAGE $OPERATOR_IMAGE"
