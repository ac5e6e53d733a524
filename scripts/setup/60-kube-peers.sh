#!/usr/bin/env bash
# Builds the real Kubernetes API server and etcd that the Kubernetes providers' tests start on
# 127.0.0.1 (as controller-runtime's envtest does), from their Go modules at pinned releases:
# kube-apiserver from k8s.io/kubernetes at the newest Kubernetes that k8s-openapi's `latest`
# feature speaks, and etcd from go.etcd.io/etcd/server/v3 at the release that Kubernetes pins.
#
# The binaries are cached outside the clone, keyed by version, so a second run on the same
# machine builds nothing:
#   ${RANGEKEEPER_PEER_CACHE:-$HOME/.cache/rangekeeper/peers}/kube-<version>/{kube-apiserver,etcd}
# The first build downloads ~300 MB of modules and takes about 15 minutes on 2 cores.
#
# Prints nothing on stdout; scripts/test.sh reads the directory from `--print-dir`.
set -euo pipefail

KUBE_VERSION=v1.37.2
# k8s.io/kubernetes v1.37.2 requires go.etcd.io/etcd/server/v3 v3.7.0: the same release.
ETCD_VERSION=v3.7.0

cache="${RANGEKEEPER_PEER_CACHE:-$HOME/.cache/rangekeeper/peers}"
dir="$cache/kube-$KUBE_VERSION-etcd-$ETCD_VERSION"

if [ "${1:-}" = --print-dir ]; then
    echo "$dir"
    exit 0
fi

if [ -x "$dir/kube-apiserver" ] && [ -x "$dir/etcd" ]; then
    echo "60-kube-peers: kube-apiserver $KUBE_VERSION and etcd $ETCD_VERSION cached in $dir" >&2
    exit 0
fi

if ! command -v go >/dev/null 2>&1; then
    echo "60-kube-peers: Go is needed to build kube-apiserver and etcd, and 'go' is not on PATH" >&2
    exit 1
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$dir"

# k8s.io/kubernetes replaces its staging modules with ./staging paths, which its module zip
# does not carry, so it cannot be `go install`ed directly: a throwaway main module requires it
# and points each staging module at its published release (v0.<minor>.<patch>).
staging_version="v0.${KUBE_VERSION#v1.}"
modroot="$(GOFLAGS=-mod=mod go mod download -json "k8s.io/kubernetes@$KUBE_VERSION" |
    sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
if [ -z "$modroot" ] || [ ! -f "$modroot/go.mod" ]; then
    echo "60-kube-peers: could not download k8s.io/kubernetes@$KUBE_VERSION" >&2
    exit 1
fi

{
    echo "module rangekeeper.invalid/kubepeers"
    echo
    sed -n 's/^go \(.*\)$/go \1/p' "$modroot/go.mod"
    echo
    echo "require k8s.io/kubernetes $KUBE_VERSION"
    echo
    echo "replace ("
    sed -n 's|^[[:space:]]*\(k8s.io/[a-z0-9-]*\) => ./staging/src/.*$|\t\1 => \1 '"$staging_version"'|p' "$modroot/go.mod"
    echo ")"
} >"$work/go.mod"

cd "$work"
export GOFLAGS=-mod=mod
export CGO_ENABLED=0
echo "60-kube-peers: resolving modules for kube-apiserver $KUBE_VERSION" >&2
go get "k8s.io/kubernetes/cmd/kube-apiserver@$KUBE_VERSION" >&2
go get "go.etcd.io/etcd/server/v3@$ETCD_VERSION" >&2
echo "60-kube-peers: building kube-apiserver (the first build takes about 15 minutes on 2 cores)" >&2
start=$SECONDS
go build -trimpath -ldflags='-s -w' -o "$dir/kube-apiserver.tmp" k8s.io/kubernetes/cmd/kube-apiserver
echo "60-kube-peers: building etcd" >&2
go build -trimpath -ldflags='-s -w' -o "$dir/etcd.tmp" go.etcd.io/etcd/server/v3
mv "$dir/kube-apiserver.tmp" "$dir/kube-apiserver"
mv "$dir/etcd.tmp" "$dir/etcd"
"$dir/kube-apiserver" --version >&2
"$dir/etcd" --version >&2
echo "60-kube-peers: built in $((SECONDS - start)) s into $dir" >&2
