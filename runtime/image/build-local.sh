#!/usr/bin/env bash
# Builds the runtime image offline, for tests: a rootfs holding this machine's
# node, the shared libraries it links, busybox sh and the runtime bundle,
# imported with podman. Same layout as runtime/Dockerfile: node at
# /usr/local/bin/node, the bundle at /app/oras-runtime.cjs, uid 65532.
#
# Usage: runtime/image/build-local.sh [image]
#   image defaults to ghcr.io/cdk8s-oras/oras-runtime:<package version>.
# The image is rebuilt only when the bundle or node changed.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
version=$(node -p "require('$root/package.json').version")
image=${1:-ghcr.io/cdk8s-oras/oras-runtime:$version}
bundle=$root/runtime/build/oras-runtime.cjs
webhook_bundle=$root/runtime/build/oras-runtime-webhook.cjs
csi_bundle=$root/runtime/build/oras-runtime-csi.cjs

die() { echo "build-local: $*" >&2; exit 1; }
[ -f "$bundle" ] && [ -f "$webhook_bundle" ] && [ -f "$csi_bundle" ] || die "the runtime bundles are missing; run 'npx projen compile' first"
command -v podman >/dev/null || die "podman is not installed; run scripts/install-peers.sh"
node_bin=$(readlink -f "$(command -v node)")
busybox=$(command -v busybox || true)
[ -n "$busybox" ] || die "busybox is not installed (Debian package busybox-static)"
if ldd "$busybox" >/dev/null 2>&1; then die "$busybox is dynamically linked; install busybox-static"; fi

# Content key: a rebuild is needed only if the bundle or the node binary changed.
key=$(cat "$bundle" "$webhook_bundle" "$csi_bundle" "$node_bin" "$0" | sha256sum | cut -c1-64)
if [ "$(podman image inspect --format '{{ index .Config.Labels "land.oras.cdk8s.content" }}' "$image" 2>/dev/null || true)" = "$key" ]; then
  echo "$image is up to date"
  exit 0
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
rootfs=$work/rootfs
mkdir -p "$rootfs"/{usr/local/bin,bin,app,etc,tmp,home/oras}
chmod 1777 "$rootfs/tmp"

install -m 0755 "$node_bin" "$rootfs/usr/local/bin/node"
for lib in $(ldd "$node_bin" | grep -o '/[^ ]*'); do
  mkdir -p "$rootfs$(dirname "$lib")"
  cp -L "$lib" "$rootfs$lib"
done
install -m 0755 "$busybox" "$rootfs/bin/busybox"
for applet in sh cat ls mkdir rm cp mv env sleep id mount umount; do ln -s busybox "$rootfs/bin/$applet"; done
install -m 0644 "$bundle" "$rootfs/app/oras-runtime.cjs"
install -m 0644 "$webhook_bundle" "$rootfs/app/oras-runtime-webhook.cjs"
install -m 0644 "$csi_bundle" "$rootfs/app/oras-runtime-csi.cjs"
printf 'root:x:0:0:root:/root:/bin/sh\noras:x:65532:65532:oras-runtime:/home/oras:/bin/sh\n' > "$rootfs/etc/passwd"
printf 'root:x:0:\noras:x:65532:\n' > "$rootfs/etc/group"
chown 65532:65532 "$rootfs/home/oras"

tar -C "$rootfs" --numeric-owner -cf - . | podman import \
  --change 'USER 65532:65532' \
  --change 'WORKDIR /app' \
  --change 'ENV HOME=/home/oras' \
  --change 'ENTRYPOINT ["/usr/local/bin/node", "/app/oras-runtime.cjs"]' \
  --change "LABEL land.oras.cdk8s.content=$key" \
  --change "LABEL org.opencontainers.image.version=$version" \
  - "$image" >/dev/null
echo "built $image"
