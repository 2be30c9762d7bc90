#!/usr/bin/env bash
# What the release workflow (.github/workflows/release.yml) publishes, built
# and checked without publishing anything:
#   - the npm package (npx projen package:js), then `npm publish --dry-run` of it;
#   - the Python package (npx projen package:python), then `twine check --strict`;
#   - unless --packages-only, the runtime image for this machine's architecture
#     (runtime/image/build.sh; with --offline-image on the offline base), then
#     its --version. The release builds linux/amd64 and linux/arm64 from the
#     same Dockerfile and bundles, which are plain JavaScript.
# With GITHUB_REF_NAME set (a tag), it must be v<package.json version>.
# --no-compile packs the assembly as it is (after `npx projen build`).
#
# Usage: scripts/release-dry-run.sh [--packages-only] [--offline-image] [--no-compile]
set -euo pipefail

die() { echo "release-dry-run: $*" >&2; exit 1; }
log() { echo "release-dry-run: $*"; }

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
packages_only=false
compile=true
image_args=()
for arg in "$@"; do
  case "$arg" in
    --packages-only) packages_only=true ;;
    --offline-image) image_args=(--offline) ;;
    --no-compile) compile=false ;;
    -h|--help) sed -n '2,15s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"; exit 0 ;;
    *) die "unknown argument \"$arg\" (see --help)" ;;
  esac
done

version=$(node -p "require('./package.json').version")
if [ -n "${GITHUB_REF_NAME:-}" ] && [ "$GITHUB_REF_NAME" != "v$version" ]; then
  die "the tag $GITHUB_REF_NAME does not name the package version $version: tag v$version, or set the version first"
fi

log "building the packages of cdk8s-oras $version"
if $compile; then npx projen compile; fi
npx projen package:js
npx projen package:python
tarball=dist-packages/js/cdk8s-oras@$version.jsii.tgz
[ -f "$tarball" ] || die "npx projen package:js made no $tarball"

log "npm publish --dry-run $tarball"
npm publish --dry-run --access public "$tarball"

peers=${CDK8S_ORAS_PEERS:-$HOME/.cache/cdk8s-oras}
twine_version=6.2.0
venv=$peers/venv-twine-$twine_version
if [ ! -x "$venv/bin/twine" ]; then
  log "pip install twine==$twine_version"
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check "twine==$twine_version"
fi
log "twine check --strict"
"$venv/bin/twine" check --strict dist-packages/python/*

if ! $packages_only; then
  log "building the runtime image ${image_args[*]}"
  image=$(bash runtime/image/build.sh "${image_args[@]}" | tail -n 1)
  engine=${ORAS_RUNTIME_ENGINE:-$(command -v podman >/dev/null && echo podman || echo docker)}
  actual=$("$engine" run --rm "$image" --version)
  [ "$actual" = "$version" ] || die "$image reports version $actual, not $version"
  log "$image runs and reports $version"
fi
log "ready to release $version"
