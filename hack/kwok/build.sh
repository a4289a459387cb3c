#!/usr/bin/env bash
# Build kwok (simulated nodes and pods, for scale tests) from its Go module,
# cached outside the repo by version. Prints the binary's path on stdout.
set -euo pipefail
version="${KWOK_VERSION:-v0.8.0}"
cache="${LAZARUS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/lazarus}"
bin="$cache/kwok/$version/kwok"
if [[ -x "$bin" ]]; then echo "$bin"; exit 0; fi
command -v go >/dev/null || { echo "hack/kwok/build.sh: no Go toolchain on PATH and no cached $bin: install Go and retry" >&2; exit 1; }
echo "building kwok $version into $(dirname "$bin")" >&2
mkdir -p "$(dirname "$bin")"
GOBIN="$(dirname "$bin").partial" CGO_ENABLED=0 go install -trimpath -ldflags "-s -w" "sigs.k8s.io/kwok/cmd/kwok@$version" \
  || { echo "hack/kwok/build.sh: 'go install sigs.k8s.io/kwok/cmd/kwok@$version' failed (errors above)" >&2; exit 1; }
mv "$(dirname "$bin").partial/kwok" "$bin"; rmdir "$(dirname "$bin").partial"
echo "$bin"
