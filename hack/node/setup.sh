#!/usr/bin/env bash
# Obtain everything a real local node needs, cached under LAZARUS_CACHE/node:
#   - containerd, runc and the CNI plugins: Debian's packages, downloaded with
#     `apt-get download` and unpacked into the cache (no dpkg, no system install)
#   - the pause image: a static C program (pause.c) packed as an image
#   - the base image: `debootstrap --variant=minbase bookworm` + python3, packed
#     as a docker-archive tar (pack_image.py) for `ctr images import`
#   - CoreDNS for pod DNS, trimmed to the kubernetes and forward plugins (hack/coredns)
# kubelet is built with the other Kubernetes binaries (hack/k8s/build.sh).
# Idempotent: each piece is keyed by its inputs; a warm run costs well under a
# second. Prints the node cache directory on stdout; progress goes to stderr.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cache="${LAZARUS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/lazarus}/node"
log() { echo "[node $(date +%T)] $*" >&2; }
die() { echo "hack/node/setup.sh: $*" >&2; exit 1; }
quiet() { local out; out="$(mktemp)"; if ! "$@" >"$out" 2>&1; then cat "$out" >&2; rm -f "$out"; return 1; fi; rm -f "$out"; }
start=$SECONDS
mkdir -p "$cache/images"

# 1. Debian packages, unpacked. Keyed by the package list; `current` links the
# one in use, so the stack finds the binaries without knowing the key.
packages=(containerd runc containernetworking-plugins debootstrap)
pkey="$(printf '%s\n' "${packages[@]}" | sha256sum | cut -c1-12)"
debs="$cache/debs-$pkey"
if [[ ! -x "$debs/root/usr/bin/containerd" ]]; then
  command -v apt-get >/dev/null || die "apt-get is missing: this script needs a Debian (bookworm) machine"
  log "downloading ${packages[*]} (Debian packages)"
  rm -rf "$debs.partial"; mkdir -p "$debs.partial/root"
  if ! (cd "$debs.partial" && quiet apt-get download "${packages[@]}"); then
    quiet apt-get update -qq || die "apt-get update failed (output above)"
    (cd "$debs.partial" && quiet apt-get download "${packages[@]}") || die "apt-get download failed (output above)"
  fi
  for deb in "$debs.partial"/*.deb; do dpkg-deb -x "$deb" "$debs.partial/root"; done
  rm -f "$debs.partial"/*.deb
  rm -rf "$debs"; mv "$debs.partial" "$debs"
fi
ln -sfn "$(basename "$debs")" "$cache/debs"
find "$cache" -maxdepth 1 -name 'debs-*' ! -name "$(basename "$debs")" -exec rm -rf {} +

# 2. The pause image.
pkey="$(cat "$here/pause.c" "$here/pack_image.py" | sha256sum | cut -c1-12)"
pause="$cache/images/pause-$pkey.tar"
if [[ ! -s "$pause" ]]; then
  command -v gcc >/dev/null || die "gcc is missing (apt-get install gcc libc6-dev)"
  log "building the pause image"
  tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT
  mkdir -p "$tmp/rootfs"
  gcc -static -Os -s -o "$tmp/rootfs/pause" "$here/pause.c" || die "compiling pause.c failed"
  python3 "$here/pack_image.py" "$tmp/rootfs" "$pause" lazarus.local/pause:1 --entrypoint /pause
  rm -rf "$tmp"; trap - EXIT
fi
ln -sfn "$(basename "$pause")" "$cache/images/pause.tar"
find "$cache/images" -name 'pause-*.tar' ! -name "$(basename "$pause")" -delete  # older keys

# 3. The base image: Debian bookworm minbase + python3 (3.11, the project's Python).
suite=bookworm; include=python3,ca-certificates
bkey="$(printf '%s %s\n' "$suite" "$include" | cat - "$here/pack_image.py" | sha256sum | cut -c1-12)"
base="$cache/images/base-$suite-$bkey.tar"
if [[ ! -s "$base" ]]; then
  log "building the base image (debootstrap --variant=minbase $suite + $include; takes a few minutes)"
  rootfs="$cache/rootfs-$suite.partial"
  clean_rootfs() {  # never follow a mount a failed debootstrap left inside
    local m; for m in proc sys dev/pts dev; do umount "$rootfs/$m" 2>/dev/null || true; done
    rm -rf --one-file-system "$rootfs"
  }
  clean_rootfs
  DEBOOTSTRAP_DIR="$debs/root/usr/share/debootstrap" quiet "$debs/root/usr/sbin/debootstrap" \
    --variant=minbase --include="$include" "$suite" "$rootfs" http://deb.debian.org/debian \
    || die "debootstrap failed (output above)"
  python3 "$here/pack_image.py" "$rootfs" "$base" "lazarus.local/base:$suite" --cmd /bin/sh
  clean_rootfs
fi
ln -sfn "$(basename "$base")" "$cache/images/base.tar"
find "$cache/images" -name "base-$suite-*.tar" ! -name "$(basename "$base")" -delete

# 4. Pod DNS: a trimmed CoreDNS from its Go module (hack/coredns).
ln -sfn "$(bash "$here/../coredns/build.sh")" "$cache/coredns"

if ((SECONDS - start > 1)); then log "ready in $((SECONDS - start))s"; fi
echo "$cache"
