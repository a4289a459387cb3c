"""DeepSpeed's checkpoint files as Lazarus objects: checkpoint engines that capture each
file into memory on save and hand out files already fetched and checked on load, swapped
into the engine for one call, and the one way a file is unpickled (never running code)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import torch
from deepspeed.runtime.checkpoint_engine.checkpoint_engine import CheckpointEngine
from deepspeed.runtime.fp16 import loss_scaler
from deepspeed.runtime.zero.config import ZeroStageEnum
from deepspeed.utils.tensor_fragment import fragment_address

from ..safe_load import load_plain
from ..termination import PermanentError

PREFIX = "deepspeed/"

# What DeepSpeed's ZeRO files pickle besides tensors and plain values (DeepSpeed 0.19).
DS_GLOBALS: list[Any] = [
    loss_scaler.LossScaler,
    loss_scaler.DynamicLossScaler,
    ZeroStageEnum,
    fragment_address,
]


def load_file(path: Path, what: str) -> Any:
    """A DeepSpeed checkpoint file, never running code (InvalidCheckpoint if refused)."""
    with torch.serialization.safe_globals(DS_GLOBALS):
        return load_plain(path.read_bytes(), what)


class CaptureEngine(CheckpointEngine):  # type: ignore[misc]
    """A DeepSpeed checkpoint engine that serializes each file into memory."""

    def __init__(self) -> None:
        super().__init__(None)
        self.name = "LazarusCapture"
        self.files: dict[str, bytes] = {}

    def create(self, info: Any) -> None:
        pass

    def save(self, state_dict: Any, path: str) -> None:
        buf = io.BytesIO()
        torch.save(state_dict, buf)  # copies every tensor's bytes: safe to upload later
        self.files[Path(path).name] = buf.getvalue()

    def load(self, path: str, map_location: Any = None) -> Any:
        raise RuntimeError("the capture engine does not load")

    def commit(self, info: Any) -> bool:
        return True


class LoadEngine(CheckpointEngine):  # type: ignore[misc]
    """A DeepSpeed checkpoint engine that hands out files already fetched and checked."""

    def __init__(self, objects: dict[str, Any]) -> None:
        super().__init__(None)
        self.name = "LazarusLoad"
        self.objects = objects

    def create(self, info: Any) -> None:
        pass

    def save(self, state_dict: Any, path: str) -> None:
        raise RuntimeError("the load engine does not save")

    def load(self, path: str, map_location: Any = None) -> Any:
        name = Path(path).name
        if name not in self.objects:
            raise PermanentError(
                f"DeepSpeed asked for {PREFIX}{name}, which this rank did not prepare "
                "(a DeepSpeed setting that reads other ranks' files is not supported)"
            )
        return self.objects[name]

    def commit(self, info: Any) -> bool:
        return True


class Swapped:
    """`engine.checkpoint_engine` replaced for one save or load, restored after."""

    def __init__(self, engine: Any, replacement: CheckpointEngine) -> None:
        self.engine, self.replacement = engine, replacement

    def __enter__(self) -> None:
        self.saved = self.engine.checkpoint_engine
        self.engine.checkpoint_engine = self.replacement

    def __exit__(self, *exc: object) -> None:
        self.engine.checkpoint_engine = self.saved
