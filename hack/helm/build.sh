#!/usr/bin/env bash
# Build helm, helm-unittest and kubeconform from their Go modules (no release
# downloads), CGO off, cached outside the repo by version (and, for
# helm-unittest, by a hash of its wrapper module). Prints the bin directory on
# stdout; everything else goes to stderr.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cache="${LAZARUS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/lazarus}"
helm_version="${HELM_VERSION:-v3.22.0}"
kubeconform_version="${KUBECONFORM_VERSION:-v0.8.0}"
unittest_version="$(awk '$1 == "github.com/helm-unittest/helm-unittest" {print $2}' "$here/unittest/go.mod")"
key="$(cat "$here/unittest/go.mod" "$here/unittest/go.sum" | sha256sum | cut -c1-12)"
bin="$cache/helm/$helm_version-$kubeconform_version-$unittest_version-$key/bin"

die() { echo "hack/helm/build.sh: $*" >&2; exit 1; }

if [[ -x "$bin/helm" && -x "$bin/helm-unittest" && -x "$bin/kubeconform" ]]; then echo "$bin"; exit 0; fi
command -v go >/dev/null || die "no Go toolchain on PATH and no cached binaries in $bin: install Go >= 1.26 and retry"

partial="$bin.partial"
mkdir -p "$partial"
echo "building helm $helm_version, helm-unittest $unittest_version, kubeconform $kubeconform_version into $bin" >&2

if [[ ! -x "$bin/helm" ]]; then
  start=$SECONDS
  # Stamp the version and the Kubernetes version helm assumes without a cluster
  # (helm template, lint), as helm's Makefile does: client-go v0.X -> 1.X.
  gomod="$(go mod download -json "helm.sh/helm/v3@$helm_version" | sed -n 's/^\t"GoMod": "\(.*\)",$/\1/p')"
  minor="$(awk '$1 == "k8s.io/client-go" {print $2}' "$gomod" | cut -d. -f2)"
  [[ -n "$minor" ]] || die "could not read k8s.io/client-go's version from helm's go.mod ($gomod)"
  ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$helm_version -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
  for p in pkg/lint/rules pkg/chartutil; do
    ldflags+=" -X helm.sh/helm/v3/$p.k8sVersionMajor=1 -X helm.sh/helm/v3/$p.k8sVersionMinor=$minor"
  done
  GOBIN="$partial" CGO_ENABLED=0 go install -trimpath -ldflags "$ldflags" "helm.sh/helm/v3/cmd/helm@$helm_version" \
    || die "'go install helm.sh/helm/v3/cmd/helm@$helm_version' failed (errors above)"
  echo "  helm: $((SECONDS - start))s" >&2
fi
if [[ ! -x "$bin/kubeconform" ]]; then
  start=$SECONDS
  GOBIN="$partial" CGO_ENABLED=0 go install -trimpath -ldflags "-s -w" "github.com/yannh/kubeconform/cmd/kubeconform@$kubeconform_version" \
    || die "'go install github.com/yannh/kubeconform/cmd/kubeconform@$kubeconform_version' failed (errors above)"
  echo "  kubeconform: $((SECONDS - start))s" >&2
fi
if [[ ! -x "$bin/helm-unittest" ]]; then
  start=$SECONDS
  # helm-unittest's go.mod has a replace line, which `go install ...@version`
  # refuses; its wrapper module (unittest/) repeats it.
  (cd "$here/unittest" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$partial/helm-unittest" \
    github.com/helm-unittest/helm-unittest/cmd/helm-unittest) \
    || die "building helm-unittest from hack/helm/unittest failed (errors above)"
  echo "  helm-unittest: $((SECONDS - start))s" >&2
fi
mkdir -p "$bin"
for t in helm kubeconform helm-unittest; do
  if [[ -e "$partial/$t" ]]; then mv "$partial/$t" "$bin/$t"; fi
done
rmdir "$partial" 2>/dev/null || true
echo "$bin"
