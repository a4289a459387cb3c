"""One resume candidate: the checked manifest, what this rank read of it, an engine's
own files and the sharded model/optimizer state, each fetched and checked before
anything of the run changes (resumer.py decides and applies)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from . import sharded
from . import storage as st
from .distributed import Collectives
from .engine_state import Prepared
from .meta import FORMAT_DEEPSPEED, TrainerExtra
from .snapshot import snapshot
from .state import Registry
from .termination import PermanentError


@dataclass(frozen=True)
class Checked:
    """A checkpoint whose manifest passed the trainer's checks."""

    name: str
    manifest: st.Manifest
    extra: TrainerExtra


@dataclass
class Read:
    """What this rank read of one candidate: its objects, or the error that rules it out."""

    checked: Checked | None = None
    common: dict[str, Any] | None = None
    rank_state: dict[str, Any] | None = None  # None: the world size changed
    reader: sharded.StoreReader | None = None  # DCP shards, fetched as the load plan needs
    engine: Prepared | None = None  # an engine's own files, fetched and checked
    error: str | None = None


def prepare_engine(registry: Registry, storage: st.Storage, checked: Checked) -> Prepared | None:
    """A registered engine's files for this rank, fetched and checked (engine_state.py)."""
    engine, layout = registry.engine, checked.extra.model_optimizer
    if engine is None and layout != FORMAT_DEEPSPEED:
        return None
    if engine is None or engine.layout != layout:
        what = f"registers a {engine.layout!r} engine" if engine else "registers no engine"
        raise PermanentError(
            f"checkpoint {checked.name} holds model and optimizer as {layout!r}, this run "
            f"{what}: resume it with the same kind of training setup"
        )
    name = checked.name
    return engine.prepare(checked.manifest, lambda path, local: storage.download(name, path, local))


def load_sharded(
    registry: Registry, dist: Collectives, reader: sharded.StoreReader
) -> tuple[dict[str, Any], str | None]:
    """Model and optimizer state loaded into copies, so a shard failing verification
    leaves the model as it was; with the error that rules the checkpoint out, if any."""
    loaded: dict[str, Any] = snapshot(sharded.capture(registry))
    try:
        sharded.load(loaded, reader, dist.ckpt_group)
    except Exception as exc:
        bad = [
            e
            for e in sharded.failures(exc)
            if isinstance(e, st.InvalidCheckpoint | st.CheckpointNotFound)
        ]
        if not bad:
            raise
        return loaded, str(bad[0])
    return loaded, None
