#!/usr/bin/env bash
# Build the project's images from their Dockerfiles without Docker or a registry:
# Debian's buildah (chroot isolation, vfs storage: no daemon, no runc, no overlay
# mounts), FROM the local Debian base (hack/node/setup.sh) instead of the public
# python:*-slim-bookworm, passed as the Dockerfiles' BASE build argument.
#
#   hack/images/build.sh            the operator image (root Dockerfile)
#
# Steps:
#   1. buildah and its libraries: Debian packages unpacked into the cache (nothing
#      installed system-wide); its rpath points at the unpacked libraries
#   2. lazarus.local/python:3.11-bookworm (python.Dockerfile): the base + pip, the
#      stand-in for python:3.11.7-slim-bookworm
#   3. lazarus.local/operator:<key> from the root Dockerfile; its RUN installs the
#      hashed lock (operator/requirements.lock, hack/lock) from PyPI over the host's
#      network, then the project with no index
# Each image is a docker-archive tar under LAZARUS_CACHE/node/images, keyed by a hash
# of its inputs (Dockerfile, build context, base image): a warm run only hashes.
# LAZARUS_IMAGES_REBUILD=1 builds the operator image again even so (to compare two
# builds of one commit). Builds are stamped with SOURCE_DATE_EPOCH (default 0) as
# their creation time and their files' times. Each tar gets <tar>.digest beside it:
# the image's ID (sha256 of its config: what `docker images --no-trunc` shows), and
# the digest of each layer, which two builds of the same inputs should share.
# The trainer image is not built: torch and its CUDA wheels are several GB
# (hack/node/README.md), so the local stack mounts the project's venv instead.
# Prints the operator image's tar path, then its reference, on stdout.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
cache="${LAZARUS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/lazarus}"
images="$cache/node/images"
log() { echo "[images $(date +%T)] $*" >&2; }
die() { echo "hack/images/build.sh: $*" >&2; exit 1; }
quiet() { local out; out="$(mktemp)"; if ! "$@" >"$out" 2>&1; then cat "$out" >&2; rm -f "$out"; return 1; fi; rm -f "$out"; }
start=$SECONDS
[[ $(id -u) == 0 ]] || die "building images with buildah's chroot isolation needs root"

bash "$repo/hack/node/setup.sh" >/dev/null  # the base image
base_tar="$(readlink -f "$images/base.tar")"

# 1. buildah, unpacked from Debian packages.
packages=(buildah libgpgme11 libsubid4 golang-github-containers-common golang-github-containers-image patchelf)
bkey="$(printf '%s\n' "${packages[@]}" rpath-1 | sha256sum | cut -c1-12)"
bh="$cache/buildah-$bkey"
if [[ ! -x "$bh/root/usr/bin/buildah" ]]; then
  log "downloading ${packages[*]} (Debian packages)"
  rm -rf "$bh.partial"; mkdir -p "$bh.partial/root"
  if ! (cd "$bh.partial" && quiet apt-get download "${packages[@]}"); then
    quiet apt-get update -qq || die "apt-get update failed (output above)"
    (cd "$bh.partial" && quiet apt-get download "${packages[@]}") || die "apt-get download failed (output above)"
  fi
  for deb in "$bh.partial"/*.deb; do dpkg-deb -x "$deb" "$bh.partial/root"; done
  rm -f "$bh.partial"/*.deb
  # An absolute rpath: buildah re-executes itself from a memfd copy for RUN steps,
  # where neither LD_LIBRARY_PATH nor $ORIGIN survive.
  "$bh.partial/root/usr/bin/patchelf" --set-rpath "$bh/root/usr/lib/x86_64-linux-gnu" \
    "$bh.partial/root/usr/bin/buildah"
  rm -rf "$bh"; mv "$bh.partial" "$bh"
fi
find "$cache" -maxdepth 1 -name 'buildah-*' ! -name "$(basename "$bh")" -exec rm -rf {} +
conf="$bh/root"
export CONTAINERS_REGISTRIES_CONF="$conf/etc/containers/registries.conf"
export CONTAINERS_CONF="$conf/usr/share/containers/containers.conf"

storage=""
cleanup() { [[ -z "$storage" ]] || rm -rf --one-file-system "$storage"; }
trap cleanup EXIT
buildah() {
  if [[ -z "$storage" ]]; then storage="$(mktemp -d "$cache/buildah-storage.XXXXXX")"; fi
  "$bh/root/usr/bin/buildah" --root "$storage/root" --runroot "$storage/run" \
    --storage-driver vfs "$@"
}
# Trust what the host trusts (a TLS-inspecting egress proxy's CA, say) during RUN
# steps: bind mounts for the build only, not part of any layer.
tls_mounts=()
if [[ -s /etc/ssl/certs/ca-certificates.crt ]]; then
  printf '[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n' >"$cache/buildah-pip.conf"
  tls_mounts=(-v /etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt:ro
              -v "$cache/buildah-pip.conf:/etc/pip.conf:ro")
fi
loaded=()
load() {  # load: make a built tar available to the next FROM
  local tar="$1"
  [[ " ${loaded[*]} " == *" $tar "* ]] && return
  quiet buildah pull --signature-policy "$conf/etc/containers/policy.json" "docker-archive:$tar" \
    || die "loading $tar into buildah failed (output above)"
  loaded+=("$tar")
}
# digest TAR: the image ID and layer digests of a docker-archive, into TAR.digest.
digest() {
  tar -xOf "$1" manifest.json | python3 -c '
import json, sys
[m] = json.load(sys.stdin)
print("id sha256:" + m["Config"].split("/")[-1].removesuffix(".json"))
for layer in m["Layers"]:
    print("layer sha256:" + layer.split("/")[-1].removesuffix(".tar"))' >"$1.digest.partial"
  mv "$1.digest.partial" "$1.digest"
}
# build NAME REF DOCKERFILE CONTEXT BASE_REF BASE_TAR KEY [REBUILD]: build once per key.
build() {
  local name="$1" ref="$2" dockerfile="$3" context="$4" base_ref="$5" base_tar="$6" key="$7"
  local out="$images/$name-$key.tar"
  if [[ ! -s "$out" || "${8:-}" == 1 ]]; then
    local t0=$SECONDS
    log "building $ref from ${dockerfile#"$repo/"} (FROM $base_ref)"
    load "$base_tar"
    buildah bud --signature-policy "$conf/etc/containers/policy.json" --isolation chroot \
      --network host --pull-never --format docker --build-arg "BASE=$base_ref" \
      --timestamp "${SOURCE_DATE_EPOCH:-0}" \
      "${tls_mounts[@]}" -f "$dockerfile" -t "$ref" "$context" >"$images/$name.build.log" 2>&1 \
      || { tail -40 "$images/$name.build.log" >&2; die "building $name failed (log: $images/$name.build.log)"; }
    quiet buildah push --signature-policy "$conf/etc/containers/policy.json" "$ref" \
      "docker-archive:$out.partial:$ref" || die "exporting $ref failed (output above)"
    mv "$out.partial" "$out"
    digest "$out"
    log "$ref built in $((SECONDS - t0))s ($(du -m "$out" | cut -f1) MB), $(head -1 "$out.digest")"
  fi
  [[ -s "$out.digest" ]] || digest "$out"  # a tar from before digests were recorded
  ln -sfn "$(basename "$out")" "$images/$name.tar"
  # Keep the three newest of each: checkouts with different code share this cache.
  ls -t "$images/$name"-*.tar | tail -n +4 | while read -r old; do rm -f "$old" "$old.digest"; done
}

# 2. The python stand-in base.
pkey="$(cat "$here/python.Dockerfile" | cat - <(basename "$base_tar") | sha256sum | cut -c1-12)"
empty="$(mktemp -d)"
build python lazarus.local/python:3.11-bookworm "$here/python.Dockerfile" "$empty" lazarus.local/base:bookworm \
  "$base_tar" "$pkey"
rmdir "$empty"
python_tar="$(readlink -f "$images/python.tar")"

# 3. The operator image: its context is what the Dockerfile copies, the checkout's
# tracked and unignored files only (not .run/, where a node's mounts live).
ctx="$(mktemp -d)"
trap 'rm -rf "$ctx"; cleanup' EXIT
(cd "$repo" && git ls-files -co --exclude-standard -z -- pyproject.toml README.md contract store \
  operator trainer_image | xargs -0 -r sh -c 'for f; do [ -f "$f" ] && printf "%s\0" "$f"; done' _ \
  | tar --null -T - -cf - | tar -xf - -C "$ctx")
okey="$( (cd "$ctx" && find . -type f -print0 | sort -z | xargs -0 sha256sum; \
  cat "$repo/Dockerfile"; basename "$python_tar") | sha256sum | cut -c1-12)"
build operator "lazarus.local/operator:$okey" "$repo/Dockerfile" "$ctx" lazarus.local/python:3.11-bookworm \
  "$python_tar" "$okey" "${LAZARUS_IMAGES_REBUILD:-0}"

if ((SECONDS - start > 1)); then log "ready in $((SECONDS - start))s"; fi
log "operator image $(head -1 "$images/operator-$okey.tar.digest") (recorded in $images/operator-$okey.tar.digest)"
echo "$images/operator-$okey.tar"
echo "lazarus.local/operator:$okey"
