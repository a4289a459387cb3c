"""A sampler whose order depends only on (seed, epoch), resumable at an offset without replay."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import Sampler

from .rng import restore_rng


class ResumableSampler(Sampler[int]):
    """Shuffled, rank-sharded indices; its position is counted in *global* samples consumed.

    The position advances only when a step is taken (`advance`), not when the DataLoader
    prefetches, so a checkpoint records what training has used. Positions are global, so a
    resume with a different world size neither repeats nor skips a sample.

    A step whose batches span an epoch boundary (gradient accumulation over an endless
    stream of epochs) counts at most what this epoch's iterator handed out: the rest of
    that step's samples came from the epoch before. After a resume, the first iterator
    restores the RNG state of the step boundary just before its first index, so the fetch
    draws what it drew in the uninterrupted run whatever ran in between (creating a
    DataLoader iterator draws a seed from the global RNG unless it has a generator).
    """

    def __init__(
        self,
        num_samples: int,
        *,
        seed: int = 0,
        shuffle: bool = True,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        self.num_samples = num_samples
        self.seed = seed
        self.shuffle = shuffle
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0
        self.offset = 0  # global samples consumed in this epoch
        self._handed_out: int | None = None  # global position of this epoch's iterator
        self._resume_rng: dict[str, Any] | None = None

    def set_epoch(self, epoch: int) -> None:
        if epoch != self.epoch:
            self.epoch = epoch
            self.offset = 0
            self._handed_out = None

    def advance(self, global_samples: int) -> None:
        self.offset += global_samples
        if self._handed_out is not None:
            self.offset = min(self.offset, self._handed_out)

    def resume_rng(self, boundary: dict[str, Any]) -> None:
        """Restore `boundary` again right before the first index after a resume."""
        self._resume_rng = boundary

    def _order(self) -> list[int]:
        if not self.shuffle:
            return list(range(self.num_samples))
        g = torch.Generator()
        g.manual_seed(self.seed * 1_000_003 + self.epoch)
        return torch.randperm(self.num_samples, generator=g).tolist()

    def __iter__(self) -> Iterator[int]:
        if self._resume_rng is not None:
            restore_rng(self._resume_rng)
            self._resume_rng = None
        start = self.offset
        order = self._order()[start:]
        usable = len(order) - len(order) % self.world_size
        self._handed_out = start
        for i in order[self.rank : usable : self.world_size]:
            self._handed_out += self.world_size
            yield i

    def __len__(self) -> int:
        return (self.num_samples - self.offset) // self.world_size

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "offset": self.offset, "seed": self.seed}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.epoch = int(state["epoch"])
        self.offset = int(state["offset"])
        self._handed_out = None
