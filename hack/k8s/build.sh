#!/usr/bin/env bash
# Build kube-apiserver, kube-controller-manager, kube-scheduler, kubelet, kubectl and etcd from
# their Go modules (no downloads of release binaries), CGO off, with the real
# version stamped in. Output is cached outside the repo, keyed by the
# Kubernetes version and a hash of this module, so a second run costs nothing.
# Prints the bin directory on stdout; everything else goes to stderr.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cache="${LAZARUS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/lazarus}"

die() { echo "hack/k8s/build.sh: $*" >&2; exit 1; }

version="$(tr -d '[:space:]' < "$here/KUBE_VERSION")"
key="$(cat "$here/go.mod" "$here/go.sum" "$here"/cmd/*/main.go | sha256sum | cut -c1-12)"
bin="$cache/k8s/$version-$key/bin"
tools=(etcd kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet)

missing=()
for t in "${tools[@]}"; do [[ -x "$bin/$t" ]] || missing+=("$t"); done
if ((${#missing[@]} == 0)); then echo "$bin"; exit 0; fi
command -v go >/dev/null || die "no Go toolchain on PATH, and no cached binaries in $bin: install Go >= $(awk '/^go /{print $2}' "$here/go.mod") (the golang Debian package or go.dev/dl) and retry"

minor="${version#v1.}"; minor="${minor%%.*}"
pkg=k8s.io/component-base/version
cgo=k8s.io/client-go/pkg/version
ldflags="-s -w"
for p in "$pkg" "$cgo"; do
  ldflags+=" -X $p.gitVersion=$version -X $p.gitMajor=1 -X $p.gitMinor=$minor"
  ldflags+=" -X $p.gitTreeState=clean -X $p.buildDate=1970-01-01T00:00:00Z"
done

mkdir -p "$bin.partial"
echo "building ${missing[*]} (Kubernetes $version) into $bin; cold builds take a while" >&2
cd "$here"
for t in "${missing[@]}"; do
  start=$SECONDS
  CGO_ENABLED=0 go build -trimpath -ldflags "$ldflags" -o "$bin.partial/$t" "./cmd/$t" \
    || die "building $t failed (see the Go errors above); check 'go version' against go.mod's go line"
  echo "  $t: $((SECONDS - start))s" >&2
done
mkdir -p "$bin"
for t in "${missing[@]}"; do mv "$bin.partial/$t" "$bin/$t"; done
rmdir "$bin.partial" 2>/dev/null || true
echo "$bin"
