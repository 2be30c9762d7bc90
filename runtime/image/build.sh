#!/usr/bin/env bash
# Builds the runtime image from runtime/Dockerfile (`npx projen runtime:image`).
#
# Usage: runtime/image/build.sh [--offline]
#   --offline   build on a Node base made from this machine (runtime/image/build-base.sh)
#               instead of the official image; nothing is pulled.
# Environment:
#   ORAS_RUNTIME_BASE_IMAGE  the base image (default: the Dockerfile's official Node image).
#                            A localhost/ base is never pulled.
#   ORAS_RUNTIME_SHELL_IMAGE the image whose static /bin/busybox step pods use (default: the
#                            Dockerfile's busybox:musl; with --offline, the offline base's)
#   ORAS_RUNTIME_IMAGE       the tag (default: what OrasRuntimeImage.default() references,
#                            ghcr.io/cdk8s-oras/oras-runtime:<package version>)
#   ORAS_RUNTIME_ENGINE      podman (default when installed) or docker
#
# The runtime bundles (runtime/build/*.cjs) are made first when they are missing
# or older than a source they come from. The build itself copies them, runs
# them once and needs no network; with unchanged bundles every layer comes from
# the engine's cache.
set -euo pipefail

die() { echo "runtime:image: $*" >&2; exit 1; }

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
offline=false
for arg in "$@"; do
  case "$arg" in
    --offline) offline=true ;;
    -h|--help) sed -n '2,18s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"; exit 0 ;;
    *) die "unknown argument \"$arg\" (see --help)" ;;
  esac
done

engine=${ORAS_RUNTIME_ENGINE:-$(command -v podman >/dev/null && echo podman || echo docker)}
command -v "$engine" >/dev/null || die "$engine is not installed (podman: scripts/install-peers.sh)"

version=$(node -p "require('$root/package.json').version")
# The repository is read from the construct, so the tag is the one OrasRuntimeImage.default() references.
repository=$(sed -n "s/^ *public static readonly DEFAULT_REPOSITORY = '\([^']*\)';.*/\1/p" "$root/src/runtime-image.ts")
[ -n "$repository" ] || die "cannot read OrasRuntimeImage.DEFAULT_REPOSITORY from src/runtime-image.ts"
image=${ORAS_RUNTIME_IMAGE:-$repository:$version}

base=${ORAS_RUNTIME_BASE_IMAGE:-}
shell=${ORAS_RUNTIME_SHELL_IMAGE:-}
if $offline; then
  [ -z "$base" ] || die "--offline and ORAS_RUNTIME_BASE_IMAGE both pick the base; give one"
  base=$(bash "$root/runtime/image/build-base.sh")
  # That base holds this machine's static busybox (busybox-static) at /bin/busybox.
  shell=${shell:-$base}
fi

# Bundle when a bundle is missing or a source is newer than the oldest bundle (same as `npx projen runtime:bundle`).
bundles=(oras-runtime.cjs oras-runtime-webhook.cjs oras-runtime-csi.cjs oras-runtime-kube.cjs)
oldest=
for bundle in "${bundles[@]}"; do
  path=$root/runtime/build/$bundle
  if [ ! -f "$path" ]; then oldest=; break; fi
  if [ -z "$oldest" ] || [ "$path" -ot "$oldest" ]; then oldest=$path; fi
done
stale=
if [ -n "$oldest" ]; then
  lock=$root/node_modules/.package-lock.json
  [ -f "$lock" ] || lock=$root/package-lock.json
  stale=$(find "$root/src" "$root/runtime" "$root/package.json" "$lock" \
    \( -path "$root/runtime/build" -o -path "$root/runtime/image" -o -path "$root/runtime/Dockerfile" \) -prune \
    -o -type f -newer "$oldest" -print -quit)
fi
if [ -z "$oldest" ] || [ -n "$stale" ]; then
  echo "runtime:image: bundling (${stale:-a bundle is missing})" >&2
  (cd "$root" && node runtime/bundle.mjs)
fi

args=(build -f "$root/runtime/Dockerfile" -t "$image" --build-arg "VERSION=$version" --network none)
if [ -n "$base" ]; then
  args+=(--build-arg "BASE_IMAGE=$base")
  # A local base must never be looked up in a registry.
  if [[ "$base" == localhost/* && "$engine" == podman ]]; then args+=(--pull=never); fi
fi
if [ -n "$shell" ]; then args+=(--build-arg "SHELL_IMAGE=$shell"); fi
previous=$("$engine" image inspect --format '{{.Id}}' "$image" 2>/dev/null || true)
echo "runtime:image: $engine ${args[*]} $root" >&2
if ! "$engine" "${args[@]}" "$root" >&2; then
  [ -n "$base" ] || die "the build failed; the default base is pulled from docker.io: without it, use --offline or ORAS_RUNTIME_BASE_IMAGE"
  die "the build failed"
fi
# The image this build replaced, with the layers only it used, unless a container still uses it.
if [ -n "$previous" ] && [ "$previous" != "$("$engine" image inspect --format '{{.Id}}' "$image")" ] \
  && [ "$("$engine" image inspect --format '{{len .RepoTags}}' "$previous" 2>/dev/null)" = 0 ]; then
  "$engine" rmi "$previous" >/dev/null 2>&1 || true
fi
echo "runtime:image: built $image${base:+ on $base}" >&2
echo "$image"
