#!/usr/bin/env bash
# Build a trimmed CoreDNS (main.go: kubernetes + forward plugins) from its Go
# module, CGO off; cached outside the repo, keyed by this module's files.
# Prints the binary's path on stdout; everything else goes to stderr.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cache="${LAZARUS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/lazarus}"
version="$(awk '$1 == "github.com/coredns/coredns" || ($1 == "require" && $2 == "github.com/coredns/coredns") {print $NF; exit}' "$here/go.mod")"
key="$(cat "$here/go.mod" "$here/go.sum" "$here/main.go" | sha256sum | cut -c1-12)"
out="$cache/coredns/$version-$key/coredns"
if [[ -x "$out" ]]; then echo "$out"; exit 0; fi
command -v go >/dev/null || { echo "hack/coredns/build.sh: no Go toolchain on PATH" >&2; exit 1; }
echo "building CoreDNS $version (kubernetes + forward plugins) into $out" >&2
mkdir -p "$(dirname "$out")"
start=$SECONDS
(cd "$here" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$out.partial" .) \
  || { echo "hack/coredns/build.sh: building CoreDNS failed (Go errors above)" >&2; exit 1; }
mv "$out.partial" "$out"
echo "  coredns: $((SECONDS - start))s" >&2
echo "$out"
