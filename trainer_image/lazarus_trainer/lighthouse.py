"""The job's torchft lighthouse without torch: `python -m lazarus_trainer.lighthouse`.

torchft's own `torchft_lighthouse` imports torch (~600 MB resident); the lighthouse itself
is Rust, so this loads torchft's extension module alone (~15 MB) and serves it until
SIGTERM/SIGINT. Settings come from the environment the operator sets
(docs/fault-tolerance.md): the job's replica groups, the groups a quorum needs (default a
majority, so no split brain can train), the port, the heartbeat and join timeouts.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from types import ModuleType

from lazarus_contract import EXIT_PERMANENT
from lazarus_contract.ft import (
    DEFAULT_HEARTBEAT_TIMEOUT_MS,
    DEFAULT_JOIN_TIMEOUT_MS,
    DEFAULT_LIGHTHOUSE_PORT,
    ENV_FT_GROUPS,
    ENV_FT_HEARTBEAT_TIMEOUT_MS,
    ENV_FT_JOIN_TIMEOUT_MS,
    ENV_FT_LIGHTHOUSE_PORT,
    ENV_FT_MIN_GROUPS,
    check_min_groups,
    majority,
)

log = logging.getLogger("lazarus.lighthouse")


class SettingError(ValueError):
    """A setting the lighthouse cannot start with (one line, exit 78)."""


def load_extension() -> ModuleType:
    """torchft's `_torchft` extension, without running `torchft/__init__.py` (torch)."""
    spec = importlib.util.find_spec("torchft")  # locates the package; executes nothing
    if spec is None or not spec.submodule_search_locations:
        raise SettingError("torchft is not installed: pip install 'lazarus[ft]'")
    found = sorted(Path(spec.submodule_search_locations[0]).glob("_torchft*.so"))
    if not found:
        raise SettingError("torchft's _torchft extension module is missing")
    loader = importlib.machinery.ExtensionFileLoader("torchft._torchft", str(found[0]))
    ext_spec = importlib.util.spec_from_file_location("torchft._torchft", found[0], loader=loader)
    assert ext_spec is not None
    module = importlib.util.module_from_spec(ext_spec)
    loader.exec_module(module)
    return module


def _int(env: dict[str, str], name: str, default: int | None) -> int:
    raw = env.get(name, "").strip()
    if not raw and default is not None:
        return default
    try:
        return int(raw)
    except ValueError:
        raise SettingError(f"{name}={raw!r} is not an integer") from None


def settings(env: dict[str, str]) -> dict[str, int]:
    """The lighthouse's arguments from `env`; SettingError names a bad one."""
    groups = _int(env, ENV_FT_GROUPS, None)
    min_groups = _int(env, ENV_FT_MIN_GROUPS, majority(max(groups, 1)))
    why = check_min_groups(groups, min_groups)
    if why is not None:
        raise SettingError(why)
    return {
        "port": _int(env, ENV_FT_LIGHTHOUSE_PORT, DEFAULT_LIGHTHOUSE_PORT),
        "min_replicas": min_groups,
        "heartbeat_timeout_ms": _int(
            env, ENV_FT_HEARTBEAT_TIMEOUT_MS, DEFAULT_HEARTBEAT_TIMEOUT_MS
        ),
        "join_timeout_ms": _int(env, ENV_FT_JOIN_TIMEOUT_MS, DEFAULT_JOIN_TIMEOUT_MS),
        "groups": groups,
    }


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    try:
        s = settings(dict(os.environ))
        ext = load_extension()
    except SettingError as exc:
        print(f"lighthouse: {exc}", file=sys.stderr)
        return EXIT_PERMANENT
    if s["min_replicas"] <= s["groups"] // 2:
        log.warning(
            "min groups %d of %d is not a majority: safe only while one lighthouse runs",
            s["min_replicas"],
            s["groups"],
        )
    server = ext.LighthouseServer(
        bind=f"[::]:{s['port']}",
        min_replicas=s["min_replicas"],
        join_timeout_ms=s["join_timeout_ms"],
        heartbeat_timeout_ms=s["heartbeat_timeout_ms"],
    )
    # The address line is what tests and logs read; the port is the Service's target.
    print(f"lighthouse serving {server.address()} min_replicas={s['min_replicas']}", flush=True)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    server.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
