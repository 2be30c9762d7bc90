#!/usr/bin/env bash
# Installs the real programs the tests run against, idempotently:
#   Debian: podman + runc (pods), busybox-static (images), docker-registry
#           (CNCF distribution), apache2-utils (htpasswd), openssl, skopeo.
#   Go:     kube-linter, the oras CLI, csi-sanity, csi-provisioner, vegeta and the jobset controller, built from the Go module proxy.
#   PyPI:   kubernetes-validate (strict Kubernetes OpenAPI schemas), in a venv.
#   CRDs:   JobSet's, from the jobset Go module (`jobset-crd` prints it).
#   Kubernetes: kube-apiserver and etcd, through scripts/install-kube.sh.
# Go and Python tools go to $CDK8S_ORAS_PEERS (default ~/.cache/cdk8s-oras),
# keyed by version so reruns cost nothing. Needs root for apt and for
# /etc/containers/containers.conf.
set -euo pipefail

PEERS=${CDK8S_ORAS_PEERS:-$HOME/.cache/cdk8s-oras}
KUBE_LINTER_VERSION=v0.8.3
ORAS_VERSION=v1.2.3
VEGETA_VERSION=v12.12.0
CSI_TEST_VERSION=v5.4.0
CSI_PROVISIONER_VERSION=v5.3.0
JOBSET_VERSION=v0.10.1
KUBERNETES_VALIDATE_VERSION=1.37.0
APT_PACKAGES=(podman runc busybox-static docker-registry apache2-utils openssl skopeo mount util-linux)

log() { echo "install-peers: $*"; }
mkdir -p "$PEERS/bin"

# shellcheck source=scripts/apt-install.sh
source "$(dirname "${BASH_SOURCE[0]}")/apt-install.sh"
apt_install "${APT_PACKAGES[@]}"

# podman on these machines needs runc and no default ulimits (see DESIGN.md).
conf=/etc/containers/containers.conf
if ! grep -qs 'runtime = "runc"' "$conf"; then
  log "writing $conf"
  mkdir -p /etc/containers
  printf '[containers]\ndefault_ulimits = []\n\n[engine]\nruntime = "runc"\n' > "$conf"
fi

# Go tools, one wrapper module and directory per tool and version. Plain
# `go install pkg@version` fails here: the module proxy answers 403 to its
# list and non-module-path lookups, so build from a module that requires the
# exact version. kube-linter's vanity host is unreachable, hence its replace.
go_tool() { # name module version package [replacement]
  local name=$1 module=$2 version=$3 package=$4 replacement=${5:-} dir="$PEERS/go/$1-$3"
  if [ ! -x "$dir/$name" ]; then
    log "building $package@$version (Go module proxy)"
    rm -rf "$dir" && mkdir -p "$dir/src"
    {
      printf 'module peers/%s\n\ngo 1.24\n\nrequire %s %s\n' "$name" "$module" "$version"
      [ -z "$replacement" ] || printf '\nreplace %s => %s\n' "$module" "$replacement"
    } > "$dir/src/go.mod"
    printf '//go:build tools\n\npackage peers\n\nimport _ "%s"\n' "$package" > "$dir/src/tools.go"
    (cd "$dir/src" && GOFLAGS='-mod=mod -buildvcs=false' go build -o "$dir/$name" "$package")
  fi
  ln -sf "$dir/$name" "$PEERS/bin/$name"
}
go_tool kube-linter golang.stackrox.io/kube-linter "$KUBE_LINTER_VERSION" golang.stackrox.io/kube-linter/cmd/kube-linter \
  "github.com/stackrox/kube-linter $KUBE_LINTER_VERSION"
go_tool oras oras.land/oras "$ORAS_VERSION" oras.land/oras/cmd/oras
go_tool csi-sanity github.com/kubernetes-csi/csi-test/v5 "$CSI_TEST_VERSION" github.com/kubernetes-csi/csi-test/v5/cmd/csi-sanity
# csi-sanity's specs for a read-only driver (lib-tests/csi-sanity-readonly), keyed by its source.
sanity_src="$(cd "$(dirname "${BASH_SOURCE[0]}")/../lib-tests/csi-sanity-readonly" && pwd)"
sanity_dir="$PEERS/go/csi-sanity-readonly-$(cat "$sanity_src"/go.mod "$sanity_src"/go.sum "$sanity_src"/main.go | sha256sum | cut -c1-12)"
if [ ! -x "$sanity_dir/csi-sanity-readonly" ]; then
  log "building csi-sanity-readonly (csi-test $CSI_TEST_VERSION)"
  mkdir -p "$sanity_dir"
  (cd "$sanity_src" && GOFLAGS='-mod=readonly -buildvcs=false' go build -o "$sanity_dir/csi-sanity-readonly" .)
fi
ln -sf "$sanity_dir/csi-sanity-readonly" "$PEERS/bin/csi-sanity-readonly"
# The external-provisioner sidecar, static: the node test runs it as the image the provisioner Deployment names.
CGO_ENABLED=0 go_tool csi-provisioner github.com/kubernetes-csi/external-provisioner/v5 "$CSI_PROVISIONER_VERSION" \
  github.com/kubernetes-csi/external-provisioner/v5/cmd/csi-provisioner
# A constant-rate HTTP load generator, for the webhook benchmark.
go_tool vegeta github.com/tsenart/vegeta/v12 "$VEGETA_VERSION" github.com/tsenart/vegeta/v12
# The JobSet controller, which the node test of JobSets runs outside the cluster.
go_tool jobset-controller sigs.k8s.io/jobset "$JOBSET_VERSION" sigs.k8s.io/jobset

venv="$PEERS/venv-kubernetes-validate-$KUBERNETES_VALIDATE_VERSION"
if [ ! -x "$venv/bin/kubernetes-validate" ]; then
  log "pip install kubernetes-validate==$KUBERNETES_VALIDATE_VERSION"
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION"
fi
ln -sf "$venv/bin/kubernetes-validate" "$PEERS/bin/kubernetes-validate"

# The JobSet CRD (the webhook prepares JobSets), from the jobset Go module; `jobset-crd` prints it.
crd="$PEERS/crds/jobset-$JOBSET_VERSION.yaml"
if [ ! -s "$crd" ]; then
  log "JobSet CRD from sigs.k8s.io/jobset@$JOBSET_VERSION (Go module proxy)"
  mkdir -p "$PEERS/crds"
  moddir=$(cd "$PEERS/crds" && GOFLAGS=-mod=mod go mod download -json "sigs.k8s.io/jobset@$JOBSET_VERSION" \
    | python3 -c 'import json, sys; print(json.load(sys.stdin)["Dir"])')
  cp "$moddir/config/components/crd/bases/jobset.x-k8s.io_jobsets.yaml" "$crd.tmp" && mv "$crd.tmp" "$crd"
fi
printf '#!/bin/sh\nexec cat "%s"\n' "$crd" > "$PEERS/bin/jobset-crd" && chmod +x "$PEERS/bin/jobset-crd"

# kube-apiserver and etcd: a long cold build, cached by version.
bash "$(dirname "${BASH_SOURCE[0]}")/install-kube.sh"

log "ready in $PEERS/bin: $(ls "$PEERS/bin" | tr '\n' ' ')"
