"""Model and optimizer state that a training engine writes as its own files (DeepSpeed ZeRO).

An engine that partitions its state across ranks knows its own file layout best; Lazarus
stores those files as objects of its checkpoint (checksummed, committed once with the
rest) and keeps RNG, data position and counters itself. The pipeline asks the registered
`EngineState` for each rank's files at the step boundary and uploads them; the resumer asks
it to fetch and check what this rank needs (`prepare`, no engine state touched yet) and,
once every rank prepared, to load it (`Prepared.apply`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from .meta import ModelOptimizerFormat
from .storage import Manifest

# (object path under the checkpoint prefix, local file): download it, size and CRC32C verified.
Fetch = Callable[[str, Path], None]


class Prepared(Protocol):
    def apply(self) -> None:
        """Load what `prepare` checked into the engine (every rank prepared)."""

    def cleanup(self) -> None:
        """Remove local copies; called whether or not `apply` ran."""


class EngineState(Protocol):
    layout: ModelOptimizerFormat  # the manifest's extra.lazarusTrainer.modelOptimizer

    def at_step(self) -> None:
        """At `lz.step()`: PermanentError (exit 78) where the engine cannot be saved now
        (DeepSpeed: on a gradient accumulation micro-step)."""

    def capture(self) -> dict[str, bytes]:
        """This rank's objects (path -> bytes), copied now: a collective on every rank."""

    def prepare(self, manifest: Manifest, fetch: Fetch) -> Prepared:
        """Fetch and check what this rank needs. InvalidCheckpoint: fall back to an older
        checkpoint; PermanentError: this run cannot load it (exit 78)."""
