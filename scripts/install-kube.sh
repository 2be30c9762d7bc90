#!/usr/bin/env bash
# Installs a real single-node Kubernetes for the tests, idempotently:
#   Debian: containerd (with runc), the CNI plugins (bridge, host-local,
#           portmap, loopback), iptables and conntrack for kube-proxy.
#   Go module proxy (the only Go source reachable here), each cached by version
#   in $CDK8S_ORAS_PEERS (default ~/.cache/cdk8s-oras) and linked into $PEERS/bin:
#   - kube-apiserver, kube-controller-manager, kube-scheduler, kubelet,
#     kube-proxy and kubectl: one wrapper module that requires k8s.io/kubernetes
#     and replaces each of its staging modules (k8s.io/api, apimachinery, ...)
#     with the published v0.Y.Z release, read from the kubernetes go.mod itself;
#     all six come out of one `go build`, so shared packages compile once;
#   - pause, the pod sandbox's process: build/pause/linux/pause.c of that same
#     module, compiled statically with gcc;
#   - etcd: a wrapper module around go.etcd.io/etcd/server/v3 whose main only
#     calls etcdmain.Main, the entry point of the etcd binary;
#   - CoreDNS: a wrapper module that imports only the plugins cluster DNS needs
#     and calls coremain.Run, as coredns.go does.
#
# A cold build takes about 10 minutes on two cores.
set -euo pipefail

PEERS=${CDK8S_ORAS_PEERS:-$HOME/.cache/cdk8s-oras}
KUBERNETES_VERSION=v1.30.14
# What kubeadm and hack/lib/etcd.sh of KUBERNETES_VERSION pin.
ETCD_VERSION=v3.5.15
COREDNS_VERSION=v1.12.1
KUBE_COMMANDS=(kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl)
APT_PACKAGES=(containerd runc containernetworking-plugins iptables conntrack iproute2 util-linux gcc libc6-dev)

log() { echo "install-kube: $*"; }
mkdir -p "$PEERS/bin"
export GOFLAGS='-mod=mod -buildvcs=false'

# shellcheck source=scripts/apt-install.sh
source "$(dirname "${BASH_SOURCE[0]}")/apt-install.sh"
apt_install "${APT_PACKAGES[@]}"
# The tests run their own containerd with their own configuration; the
# package's service would hold /run/containerd and /var/lib/containerd.
if command -v systemctl >/dev/null && systemctl is-active --quiet containerd 2>/dev/null; then
  systemctl disable --now containerd >/dev/null 2>&1 || true
fi

# Runs "$@" and logs how long it took.
timed() { # label command...
  local label=$1 start=$SECONDS
  shift
  "$@"
  log "$label took $((SECONDS - start))s"
}

build_kubernetes() {
  local dir=$1 gomod minor
  # The kubernetes go.mod replaces its staging modules with ./staging/src/...,
  # which a dependent module cannot use; list them from the published go.mod.
  printf 'module peers/kubernetes\n\ngo 1.24\n' > "$dir/src/go.mod"
  gomod=$(cd "$dir/src" && go mod download -json "k8s.io/kubernetes@$KUBERNETES_VERSION" | sed -n 's/^\t"GoMod": "\(.*\)",$/\1/p')
  [ -f "$gomod" ] || { log "could not download k8s.io/kubernetes@$KUBERNETES_VERSION"; return 1; }
  minor=${KUBERNETES_VERSION#v1.}
  {
    printf 'module peers/kubernetes\n\ngo 1.24\n\nrequire k8s.io/kubernetes %s\n\nreplace (\n' "$KUBERNETES_VERSION"
    awk '$2 == "=>" && $3 ~ /^\.\/staging\// { print $1 }' "$gomod" | sort -u | while read -r staging; do
      printf '\t%s => %s v0.%s\n' "$staging" "$staging" "$minor"
    done
    printf ')\n'
  } > "$dir/src/go.mod"
  {
    printf '//go:build tools\n\npackage peers\n\nimport (\n'
    for command in "${KUBE_COMMANDS[@]}"; do printf '\t_ "k8s.io/kubernetes/cmd/%s"\n' "$command"; done
    printf ')\n'
  } > "$dir/src/tools.go"
  # The version stamps hack/lib/version.sh would set; /version reports them.
  local pkg=k8s.io/component-base/version major=${KUBERNETES_VERSION#v} ldflags packages=()
  major=${major%%.*}
  minor=${minor%%.*}
  ldflags="-s -w -X $pkg.gitVersion=$KUBERNETES_VERSION -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean"
  for command in "${KUBE_COMMANDS[@]}"; do packages+=("k8s.io/kubernetes/cmd/$command"); done
  mkdir -p "$dir/out"
  (cd "$dir/src" && go build -trimpath -ldflags "$ldflags" -o "$dir/out/" "${packages[@]}")

  # The sandbox ("pause") process of every pod, from the same module.
  local source
  source=$(cd "$dir/src" && go list -m -f '{{.Dir}}' k8s.io/kubernetes)/build/pause/linux/pause.c
  gcc -Os -static -Wall -Werror -DVERSION="\"$KUBERNETES_VERSION\"" -o "$dir/out/pause" "$source"
  strip "$dir/out/pause"
  mv "$dir/out/"* "$dir/"
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

build_coredns() {
  local dir=$1
  printf 'module peers/coredns\n\ngo 1.24\n\nrequire github.com/coredns/coredns %s\n' "$COREDNS_VERSION" > "$dir/src/go.mod"
  cat > "$dir/src/main.go" <<'EOF'
// CoreDNS with the plugins a cluster's DNS needs, in the order of its
// plugin.cfg; coremain.Run is the entry point of the coredns binary.
package main

import (
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/coremain"

	_ "github.com/coredns/coredns/plugin/bind"
	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/log"
	_ "github.com/coredns/coredns/plugin/loop"
	_ "github.com/coredns/coredns/plugin/ready"
	_ "github.com/coredns/coredns/plugin/reload"
	_ "github.com/coredns/coredns/plugin/template"
)

func init() {
	dnsserver.Directives = []string{"bind", "ready", "health", "errors", "log", "cache", "reload", "loop", "template", "kubernetes"}
}

func main() {
	coremain.Run()
}
EOF
  (cd "$dir/src" && go build -trimpath -ldflags '-s -w' -o "$dir/coredns.tmp" .)
  mv "$dir/coredns.tmp" "$dir/coredns"
}

# One directory per tool set and version; every binary present means "installed".
kube_tool() { # dir-name version builder binaries...
  local name=$1 version=$2 builder=$3 dir="$PEERS/go/$1-$2" binary built=true
  shift 3
  for binary in "$@"; do [ -x "$dir/$binary" ] || built=false; done
  if $built; then
    log "$name $version already built"
  else
    log "building $name $version (Go module proxy)"
    rm -rf "$dir" && mkdir -p "$dir/src"
    timed "building $name $version" "$builder" "$dir"
  fi
  for binary in "$@"; do ln -sf "$dir/$binary" "$PEERS/bin/$binary"; done
}

start=$SECONDS
kube_tool etcd "$ETCD_VERSION" build_etcd etcd
kube_tool kubernetes "$KUBERNETES_VERSION" build_kubernetes "${KUBE_COMMANDS[@]}" pause
kube_tool coredns "$COREDNS_VERSION" build_coredns coredns
"$PEERS/bin/etcd" --version | sed -n '1s/^/install-kube: /p'
"$PEERS/bin/kube-apiserver" --version | sed 's/^/install-kube: /'
"$PEERS/bin/coredns" -version | sed -n '1s/^/install-kube: /p'
log "ready in $PEERS/bin after $((SECONDS - start))s"
