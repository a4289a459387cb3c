"""Lazarus for Accelerate scripts.

Accelerate's `save_state` captures models, optimizers, schedulers, the scaler and RNGs, but
writes them synchronously to a local directory without a commit marker or checksum, and it
does not record where in the data the run is or which step it reached (accelerate#1601,
#2016). This adapter registers the *unwrapped* objects with Lazarus, which owns the step
counter and data position, and saves through the store.
"""

from __future__ import annotations

from typing import Any

import torch

from ..api import Lazarus
from ..config import LazarusConfig
from ..state import Stateful


def _unwrap_optimizer(opt: Any) -> Stateful:
    inner = getattr(opt, "optimizer", opt)  # AcceleratedOptimizer keeps the real one here
    assert isinstance(inner, Stateful)
    return inner


def _unwrap_scheduler(sched: Any) -> Stateful:
    inner = getattr(sched, "scheduler", sched)  # AcceleratedScheduler
    assert isinstance(inner, Stateful)
    return inner


def from_accelerator(
    accelerator: Any,
    *,
    model: torch.nn.Module,
    optimizer: Any,
    scheduler: Any = None,
    sampler: Stateful | None = None,
    config: LazarusConfig | None = None,
    extras: dict[str, Stateful] | None = None,
) -> Lazarus:
    """A `Lazarus` for objects returned by `accelerator.prepare(...)`.

    Create it *after* `prepare` (the process group exists then). Pass the scheduler
    unprepared or prepared: either way Lazarus saves the real one. Objects registered with
    `accelerator.register_for_checkpointing` are saved too.
    """
    lz = Lazarus(config)
    custom = {f"accelerate_custom_{i}": o for i, o in enumerate(accelerator._custom_objects)}
    lz.register(
        model=accelerator.unwrap_model(model),
        optimizer=_unwrap_optimizer(optimizer),
        scheduler=_unwrap_scheduler(scheduler) if scheduler is not None else None,
        scaler=accelerator.scaler,
        sampler=sampler,
        extras={**custom, **(extras or {})},
    )
    return lz
