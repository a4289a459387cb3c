#!/usr/bin/env bash
# Compile DeepSpeed's CPU shared-memory comm op once into the cache, so trainer tests do not.
# DeepSpeed (installed with DS_BUILD_OPS=0) builds it with g++ at the first
# init_distributed on CPU (~27 s) into TORCH_EXTENSIONS_DIR; tests/trainer point that at
# $cache/torch_extensions. A second run finds it built and costs a second.
set -euo pipefail
cache="${LAZARUS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/lazarus}"
venv="$cache/venv"
export TORCH_EXTENSIONS_DIR="${TORCH_EXTENSIONS_DIR:-$cache/torch_extensions}"
# The venv's ninja first, as under hack/test: a build logged by another ninja (the
# system's) is rebuilt by the next one, so the cache would never hold.
export PATH="$venv/bin:$PATH"
# The very call DeepSpeed makes in init_distributed (deepspeed.comm.torch).
"$venv/bin/python" -c 'from deepspeed.comm.torch import build_shm_op; build_shm_op()' \
  2>&1 | grep -v "Setting accelerator to CPU" || true
echo "$TORCH_EXTENSIONS_DIR"
