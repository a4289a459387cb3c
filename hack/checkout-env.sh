# Sourced by hack/test, hack/cluster and hack/demo: run *this* checkout's code.
# The cached venv is shared by every checkout on the machine (torch is large), and
# its editable install points at whichever checkout ran .ci/setup last. Putting
# this checkout's package folders first on PYTHONPATH makes its own code win, in
# the wrapper's Python and in every subprocess it starts (operator, trainer, CLI).
# Expects $repo; sets $venv and exports PYTHONPATH.
venv="${LAZARUS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/lazarus}/venv"
LAZARUS_CODE_PATH="$repo/contract:$repo/store:$repo/operator:$repo/trainer_image:$repo/hack"
export PYTHONPATH="$LAZARUS_CODE_PATH${PYTHONPATH:+:$PYTHONPATH}"
