#!/usr/bin/env bash
# Build the MinIO server from its Go module (no release-binary downloads), CGO
# off, cached outside the repo keyed by the pinned module version, so a second
# run costs nothing. Used by bench/store_throughput.py and the MinIO
# compatibility run of tests/store. Prints the binary's path on stdout;
# everything else goes to stderr.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cache="${LAZARUS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/lazarus}"

die() { echo "hack/minio/build.sh: $*" >&2; exit 1; }
command -v go >/dev/null || die "no Go toolchain on PATH: install Go >= 1.24 (https://go.dev/dl) and retry"

version="$(tr -d '[:space:]' < "$here/MINIO_VERSION")"
bin="$cache/minio/$version/minio"
if [[ -x "$bin" ]]; then echo "$bin"; exit 0; fi

mkdir -p "$cache/minio/$version/partial"
echo "building github.com/minio/minio@$version into $bin; a cold build takes a while" >&2
start=$SECONDS
# go install of a module@version ignores any go.mod around us and uses the
# module's own requirements, exactly as its authors pinned them.
GOBIN="$cache/minio/$version/partial" CGO_ENABLED=0 \
  go install -trimpath -ldflags "-s -w" "github.com/minio/minio@$version" \
  || die "building minio failed (see the Go errors above); check 'go version' (module needs >= 1.24)"
mv "$cache/minio/$version/partial/minio" "$bin"
rmdir "$cache/minio/$version/partial" 2>/dev/null || true
echo "  minio: $((SECONDS - start))s" >&2
echo "$bin"
