#!/usr/bin/env bash
# Build a Debian root filesystem with debootstrap and import it as a Docker image:
# the base of every image we use, since no container registry is reachable.
#
#   rootfs.sh base   python3 runtime base for images/node.Dockerfile, images/operator.Dockerfile
#   rootfs.sh node   systemd + containerd + etcd + CNI plugins: the cluster node (like kind's)
#
# Prints the image reference. The tarball is cached in $CACHE_DIR/rootfs keyed by
# suite and package list; the image is only re-imported when missing.
set -euo pipefail
# shellcheck source=cluster/lib/common.sh
source "$(dirname "$0")/lib/common.sh"

name="${1:-}"
case "$name" in
	base) include="ca-certificates,python3,python3-venv,tini" ;;
	node) include="systemd,systemd-sysv,dbus,containerd,runc,containernetworking-plugins,etcd-server,iptables,iproute2,conntrack,ethtool,socat,kmod,util-linux,mount,procps,ca-certificates,libseccomp2,jq,less" ;;
	*) die "usage: $0 base|node" ;;
esac
key="$(printf '%s %s %s v1' "$DEBIAN_SUITE" "$DEBIAN_MIRROR" "$include" | sha256sum | cut -c1-12)"
image="consortium/$name-rootfs:$DEBIAN_SUITE-$key"
tarball="$CACHE_DIR/rootfs/$name-$DEBIAN_SUITE-$key.tar"

if docker image inspect "$image" >/dev/null 2>&1; then
	echo "$image"
	exit 0
fi

if [ ! -f "$tarball" ]; then
	command -v debootstrap >/dev/null || die "debootstrap is not installed (apt-get install debootstrap)"
	mkdir -p "$CACHE_DIR/rootfs"
	dir="$(mktemp -d "$CACHE_DIR/rootfs/$name.XXXXXX")"
	trap 'rm -rf "$dir"' EXIT
	log "debootstrap $DEBIAN_SUITE ($name: $include)"
	t0=$SECONDS
	if ! debootstrap --variant=minbase --include="$include" "$DEBIAN_SUITE" "$dir/root" "$DEBIAN_MIRROR" >"$dir.log" 2>&1; then
		tail -n 30 "$dir.log" >&2
		[ ! -f "$dir/root/debootstrap/debootstrap.log" ] || tail -n 30 "$dir/root/debootstrap/debootstrap.log" >&2
		die "debootstrap failed for $name (log: $dir.log)"
	fi
	# Slim it: no apt lists, docs or caches in an image that never runs apt.
	rm -rf "$dir/root"/var/lib/apt/lists/* "$dir/root"/var/cache/apt/*.bin "$dir/root"/var/cache/apt/archives/*.deb \
		"$dir/root"/usr/share/doc/* "$dir/root"/usr/share/man/* "$dir/root"/usr/share/info/* "$dir/root"/var/log/*.log
	echo "deb $DEBIAN_MIRROR $DEBIAN_SUITE main" >"$dir/root/etc/apt/sources.list"
	: >"$dir/root/etc/machine-id"
	tar --numeric-owner --xattrs -C "$dir/root" -cf "$tarball.tmp" .
	mv "$tarball.tmp" "$tarball"
	rm -f "$dir.log"
	log "rootfs $name built in $((SECONDS - t0))s ($(du -h "$tarball" | cut -f1))"
fi

log "importing $tarball as $image"
docker import --change 'CMD ["/bin/bash"]' "$tarball" "$image" >/dev/null
echo "$image"
