#!/usr/bin/env bash
# Makes a Node base image offline, for building runtime/Dockerfile without a
# registry: this machine's node binary, the shared libraries `ldd` lists for it
# and busybox-static (sh, mount, umount and the other applets), imported with
# `podman import`. It has the layout of the official node:<version>-*-slim image
# that the Dockerfile uses by default: node at /usr/local/bin/node, a merged /usr
# (/bin, /sbin, /lib, /lib64 are links into /usr), a "node" user with uid 1000,
# PATH and NODE_VERSION set, CMD ["node"].
#
# Usage: runtime/image/build-base.sh [image]
#   image defaults to localhost/cdk8s-oras/node-base:<node version>.
# Prints the image reference on stdout. The image is made again only when node,
# its libraries, busybox or this script changed.
set -euo pipefail

die() { echo "build-base: $*" >&2; exit 1; }

command -v podman >/dev/null || die "podman is not installed; run scripts/install-peers.sh"
node_bin=$(readlink -f "$(command -v node)") || die "node is not installed"
node_version=$("$node_bin" -p 'process.versions.node')
image=${1:-localhost/cdk8s-oras/node-base:$node_version}
busybox=$(command -v busybox || true)
[ -n "$busybox" ] || die "busybox is not installed (Debian package busybox-static)"
busybox=$(readlink -f "$busybox")
if ldd "$busybox" >/dev/null 2>&1; then die "$busybox is dynamically linked; install busybox-static"; fi
mapfile -t libs < <(ldd "$node_bin" | grep -o '/[^ ]*')
[ "${#libs[@]}" -gt 0 ] || die "ldd lists no libraries for $node_bin"

# Content key: the base is made again only if one of its inputs changed.
key=$(cat "$node_bin" "${libs[@]}" "$busybox" "${BASH_SOURCE[0]}" | sha256sum | cut -c1-64)
if [ "$(podman image inspect --format '{{ index .Config.Labels "land.oras.cdk8s.node-base.content" }}' "$image" 2>/dev/null || true)" = "$key" ]; then
  echo "build-base: $image is up to date" >&2
  echo "$image"
  exit 0
fi

previous=$(podman image inspect --format '{{.Id}}' "$image" 2>/dev/null || true)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
rootfs=$work/rootfs
mkdir -p "$rootfs"/usr/{bin,sbin,lib,lib64,local/bin} "$rootfs"/{etc,tmp,root,home/node}
for dir in bin sbin lib lib64; do ln -s "usr/$dir" "$rootfs/$dir"; done
chmod 1777 "$rootfs/tmp"
chmod 0700 "$rootfs/root"

install -m 0755 "$node_bin" "$rootfs/usr/local/bin/node"
for lib in "${libs[@]}"; do
  mkdir -p "$rootfs$(dirname "$lib")"
  cp -L "$lib" "$rootfs$lib"
done

install -m 0755 "$busybox" "$rootfs/usr/bin/busybox"
# Every applet where busybox would install it (bin/sh, bin/mount, usr/bin/env, ...).
while read -r applet; do
  [ -e "$rootfs/$applet" ] || [ -L "$rootfs/$applet" ] || ln -s /usr/bin/busybox "$rootfs/$applet"
done < <("$busybox" --list-full | grep -v -e '^bin/busybox$' -e '^linuxrc$')

printf 'root:x:0:0:root:/root:/bin/sh\nnode:x:1000:1000::/home/node:/bin/sh\n' > "$rootfs/etc/passwd"
printf 'root:x:0:\nnode:x:1000:\n' > "$rootfs/etc/group"
chown 1000:1000 "$rootfs/home/node"

tar -C "$rootfs" --numeric-owner -cf - . | podman import --quiet \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change "ENV NODE_VERSION=$node_version" \
  --change 'CMD ["node"]' \
  --change "LABEL land.oras.cdk8s.node-base.content=$key" \
  --change "LABEL org.opencontainers.image.description=\"Offline Node $node_version base for runtime/Dockerfile (tests only)\"" \
  - "$image" >/dev/null
# The base this one replaced: gone once no image is built on it any more (build.sh removes those it replaces).
[ -z "$previous" ] || podman rmi "$previous" >/dev/null 2>&1 || true
echo "build-base: made $image" >&2
echo "$image"
