"""What Lazarus cannot resume exactly in a run's data setup, said once, at the first step.

Checked at the first step boundary, when the loop's DataLoader is iterating: the setups
that are exact are in docs/trainer.md's fidelity matrix; these are the ones that are not,
each with what to do instead. (Setups refused outright are refused where they are declared,
e.g. `from_accelerator`.)
"""

from __future__ import annotations

import logging
from typing import Protocol, runtime_checkable

from .data import ResumableSampler
from .state import Progress, Registry

log = logging.getLogger("lazarus")

NO_POSITION = (
    "no data position is registered: a resume starts the data over (this epoch's samples "
    "are seen again, in a new order if shuffled) instead of going on where the run stopped; "
    "register one: lz.register(sampler=ResumableSampler(...)) in the DataLoader, or "
    "from_accelerator(..., dataloader=prepared_loader)"
)
NO_SAMPLES = (
    "lz.step() is given no samples=: the registered sampler's position does not advance, so "
    "a resume replays the epoch; pass the step's global sample count, "
    "lz.step(samples=batch_size * accumulation * world_size)"
)
WORKERS = (
    "DataLoader workers (num_workers>0) draw from RNGs of their own that no checkpoint holds: "
    "randomness in a dataset or collate_fn that runs in them (augmentation, masking) is not "
    "the uninterrupted run's after a resume, nor is the position of a step whose batches "
    "span an epoch boundary; for an exact resume use num_workers=0, or draw that randomness "
    "from a generator seeded by (seed, epoch, index)"
)

FETCH_UNHOOKED = (
    "the DataLoader's dataset ({dataset}) takes no instance attribute (__slots__, a frozen "
    "dataclass), so Lazarus cannot record the RNG at its fetches: randomness its "
    "__getitem__ or the collate_fn draws (augmentation, masking) is not the uninterrupted "
    "run's for the batch fetched ahead of a resume; for an exact resume give the dataset a "
    "__dict__ (add '__dict__' to its __slots__), or draw that randomness from a generator "
    "seeded by (seed, epoch, index)"
)


@runtime_checkable
class Inexact(Protocol):
    """A registered data position that knows what of its setup it cannot resume exactly."""

    def fidelity_warnings(self) -> list[str]:
        """Each inexact part, with what to do (empty: none)."""


def dataloader_workers() -> bool:
    """Whether a DataLoader with workers has iterated in this process: its first iterator
    installs torch's SIGCHLD handler, and says so in this flag."""
    from torch.utils.data._utils import signal_handling

    return bool(getattr(signal_handling, "_SIGCHLD_handler_set", False))


def data_warnings(registry: Registry, progress: Progress) -> list[str]:
    """The run's inexact data setups (empty when all of it resumes exactly)."""
    found = []
    sampler = registry.sampler
    if sampler is None and registry.data_owner is None:
        found.append(NO_POSITION)
    if isinstance(sampler, ResumableSampler) and progress.samples_seen == 0:
        found.append(NO_SAMPLES)
    if dataloader_workers():
        found.append(WORKERS)
    if isinstance(sampler, Inexact):
        found.extend(sampler.fidelity_warnings())
    return found


def warn_data_setup(registry: Registry, progress: Progress) -> None:
    for message in data_warnings(registry, progress):
        log.warning("%s", message)
