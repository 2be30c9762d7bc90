#!/usr/bin/env bash
# Builds a real kube-apiserver and etcd for the tests, idempotently, from the
# Go module proxy (the only Go source reachable here). Each lands in
# $CDK8S_ORAS_PEERS (default ~/.cache/cdk8s-oras) under a directory keyed by
# version, so reruns cost nothing; both are linked into $PEERS/bin.
#
#   kube-apiserver: a wrapper module that requires k8s.io/kubernetes and
#     replaces each of its staging modules (k8s.io/api, apimachinery, ...) with
#     the published v0.Y.Z release, read from the kubernetes go.mod itself.
#   etcd: a wrapper module around go.etcd.io/etcd/server/v3 whose main only
#     calls etcdmain.Main, the same entry point as the etcd binary.
#
# A cold kube-apiserver build takes 10-20 minutes on two cores.
set -euo pipefail

PEERS=${CDK8S_ORAS_PEERS:-$HOME/.cache/cdk8s-oras}
KUBERNETES_VERSION=v1.30.14
# What kubeadm and hack/lib/etcd.sh of KUBERNETES_VERSION pin.
ETCD_VERSION=v3.5.15

log() { echo "install-kube: $*"; }
mkdir -p "$PEERS/bin"
export GOFLAGS='-mod=mod -buildvcs=false'

# Runs "$@" and logs how long it took.
timed() { # label command...
  local label=$1 start=$SECONDS
  shift
  "$@"
  log "$label took $((SECONDS - start))s"
}

build_kube_apiserver() {
  local dir=$1 gomod minor
  # The kubernetes go.mod replaces its staging modules with ./staging/src/...,
  # which a dependent module cannot use; list them from the published go.mod.
  gomod=$(cd "$dir/src" && go mod download -json "k8s.io/kubernetes@$KUBERNETES_VERSION" | sed -n 's/^\t"GoMod": "\(.*\)",$/\1/p')
  [ -f "$gomod" ] || { log "could not download k8s.io/kubernetes@$KUBERNETES_VERSION"; return 1; }
  minor=${KUBERNETES_VERSION#v1.}
  {
    printf 'module peers/kube-apiserver\n\ngo 1.24\n\nrequire k8s.io/kubernetes %s\n\nreplace (\n' "$KUBERNETES_VERSION"
    awk '$2 == "=>" && $3 ~ /^\.\/staging\// { print $1 }' "$gomod" | sort -u | while read -r staging; do
      printf '\t%s => %s v0.%s\n' "$staging" "$staging" "$minor"
    done
    printf ')\n'
  } > "$dir/src/go.mod"
  printf '//go:build tools\n\npackage peers\n\nimport _ "k8s.io/kubernetes/cmd/kube-apiserver"\n' > "$dir/src/tools.go"
  # The version stamps hack/lib/version.sh would set; /version reports them.
  local pkg=k8s.io/component-base/version major=${KUBERNETES_VERSION#v} ldflags
  major=${major%%.*}
  minor=${minor%%.*}
  ldflags="-s -w -X $pkg.gitVersion=$KUBERNETES_VERSION -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean"
  (cd "$dir/src" && go build -trimpath -ldflags "$ldflags" -o "$dir/kube-apiserver.tmp" k8s.io/kubernetes/cmd/kube-apiserver)
  mv "$dir/kube-apiserver.tmp" "$dir/kube-apiserver"
}

build_etcd() {
  local dir=$1
  printf 'module peers/etcd\n\ngo 1.24\n\nrequire go.etcd.io/etcd/server/v3 %s\n' "$ETCD_VERSION" > "$dir/src/go.mod"
  cat > "$dir/src/main.go" <<'EOF'
// The etcd server, built from its published module: the same entry point as
// the etcd binary (go.etcd.io/etcd/server/v3/main.go).
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
EOF
  (cd "$dir/src" && go build -trimpath -ldflags '-s -w' -o "$dir/etcd.tmp" .)
  mv "$dir/etcd.tmp" "$dir/etcd"
}

# One directory per tool and version; a finished binary means "installed".
kube_tool() { # name version builder
  local name=$1 version=$2 builder=$3 dir="$PEERS/go/$1-$2"
  if [ -x "$dir/$name" ]; then
    log "$name $version already built"
  else
    log "building $name $version (Go module proxy)"
    rm -rf "$dir" && mkdir -p "$dir/src"
    timed "building $name $version" "$builder" "$dir"
  fi
  ln -sf "$dir/$name" "$PEERS/bin/$name"
}

start=$SECONDS
kube_tool etcd "$ETCD_VERSION" build_etcd
kube_tool kube-apiserver "$KUBERNETES_VERSION" build_kube_apiserver
"$PEERS/bin/etcd" --version | sed -n '1s/^/install-kube: /p'
"$PEERS/bin/kube-apiserver" --version | sed 's/^/install-kube: /'
log "ready in $PEERS/bin after $((SECONDS - start))s"
