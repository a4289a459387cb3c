#!/usr/bin/env bash
# Build Kueue's controller manager (cmd/kueue) from its Go module, pinned by
# version (Kueue's own go.mod/go.sum pin every dependency; it has no replace
# directives, so `go install pkg@version` builds exactly the release), CGO off,
# with the version stamped in. Cached outside the repo by version, beside the
# manifests the local stack applies, copied from the same module: its CRDs
# (config/components/crd/bases), the manager's ClusterRole and Secrets Role and
# the webhook configurations (config/components/{rbac,webhook}).
# Prints the directory holding `kueue` and `manifests/` on stdout; everything
# else goes to stderr.
set -euo pipefail
version="${KUEUE_VERSION:-v0.17.0}"
module=sigs.k8s.io/kueue
cache="${LAZARUS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/lazarus}"
dir="$cache/kueue/$version"
manifests=(crds manager-role.yaml manager-secrets-role.yaml webhooks.yaml)
complete() { for m in "${manifests[@]}"; do [[ -e "$dir/manifests/$m" ]] || return 1; done; }
if [[ -x "$dir/kueue" ]] && complete; then echo "$dir"; exit 0; fi
die() { echo "hack/kueue/build.sh: $*" >&2; exit 1; }
command -v go >/dev/null || die "no Go toolchain on PATH and no cached $dir/kueue: install Go and retry"
mkdir -p "$dir"

if ! complete; then
  src="$(go mod download -json "$module@$version" | sed -n 's/^\s*"Dir": "\(.*\)",$/\1/p')"
  cfg="$src/config/components"
  [[ -d "$cfg/crd/bases" ]] || die "'go mod download $module@$version' gave no module with config/components/crd/bases"
  rm -rf "$dir/manifests.partial"; mkdir -p "$dir/manifests.partial/crds"
  cp "$cfg"/crd/bases/*.yaml "$dir/manifests.partial/crds/"
  cp "$cfg/rbac/role.yaml" "$dir/manifests.partial/manager-role.yaml"
  cp "$cfg/rbac/manager_secrets_role.yaml" "$dir/manifests.partial/manager-secrets-role.yaml"
  cp "$cfg/webhook/manifests.yaml" "$dir/manifests.partial/webhooks.yaml"
  chmod -R u+w "$dir/manifests.partial"; rm -rf "$dir/manifests"; mv "$dir/manifests.partial" "$dir/manifests"
fi

if [[ ! -x "$dir/kueue" ]]; then
  echo "building Kueue $version into $dir; a cold build takes several minutes" >&2
  start=$SECONDS
  ldflags="-s -w -X $module/pkg/version.GitVersion=$version -X $module/pkg/version.BuildDate=1970-01-01T00:00:00Z"
  rm -rf "$dir/bin.partial"
  GOBIN="$dir/bin.partial" CGO_ENABLED=0 go install -trimpath -ldflags "$ldflags" "$module/cmd/kueue@$version" \
    || die "'go install $module/cmd/kueue@$version' failed (Go errors above)"
  mv "$dir/bin.partial/kueue" "$dir/kueue"; rmdir "$dir/bin.partial"
  echo "  kueue: $((SECONDS - start))s" >&2
fi
echo "$dir"
