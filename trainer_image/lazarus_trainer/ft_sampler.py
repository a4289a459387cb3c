"""The data of replica groups that come and go: one global order, shared out per step.

Each optimizer step takes the next `participants * batch_size` samples of the job's one
shuffled order (a function of seed and epoch); the group with participating rank r takes
the r-th `batch_size` of them. The position is global and advances only when the step
commits, so a step that failed (a peer died inside the allreduce) is drawn again by
whoever joins the next one, and a replacement takes the position with the rest of the
live state from a peer: no sample is replayed or skipped, whoever fails.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

# (participating rank or None, participants) of the step being taken.
Participation = Callable[[], tuple[int | None, int]]


class ReplicaGroupSampler:
    """Per-step index lists for this replica group; register it as Lazarus' `sampler`."""

    def __init__(
        self, num_samples: int, batch_size: int, *, seed: int = 0, shuffle: bool = True
    ) -> None:
        if batch_size < 1 or num_samples < batch_size:
            raise ValueError(f"batch_size {batch_size} must be 1..num_samples ({num_samples})")
        self.num_samples = num_samples
        self.batch_size = batch_size
        self.seed = seed
        self.shuffle = shuffle
        self.epoch = 0
        self.offset = 0  # global samples of this epoch that committed steps took
        self.participating = False  # whether this group's draw of this step counts
        self._pending = 0  # global samples of the step drawn last, used once it commits
        self._participation: Participation | None = None

    def attach(self, participation: Participation) -> None:
        """Lazarus' fault-tolerant mode gives each step's quorum here."""
        self._participation = participation

    def _order(self, epoch: int) -> list[int]:
        if not self.shuffle:
            return list(range(self.num_samples))
        g = torch.Generator()
        g.manual_seed(self.seed * 1_000_003 + epoch)
        return torch.randperm(self.num_samples, generator=g).tolist()

    def next_batch(self) -> list[int]:
        """This group's indices of the step; call after `optimizer.zero_grad()` (the quorum).

        A group that is not participating (it heals from a peer this step) gets rank 0's
        indices to run forward and backward with; its gradients are zeroed and its draw
        does not count."""
        rank, participants = self._participation() if self._participation else (0, 1)
        self._pending = need = max(participants, 1) * self.batch_size
        self.participating = rank is not None
        epoch, offset = self._start(need)
        start = offset + (rank or 0) * self.batch_size
        return self._order(epoch)[start : start + self.batch_size]

    def _start(self, need: int) -> tuple[int, int]:
        """Where a step of `need` samples starts: an epoch's tail too short for it is
        dropped and the next epoch starts the step."""
        if self.offset + need > self.num_samples:
            return self.epoch + 1, 0
        return self.epoch, self.offset

    def advance(self, _samples: int = 0) -> None:
        """The step committed (`lz.step()`): its samples are used. Computed from the
        position now, which a healing group has just taken from its peer."""
        if self._pending:
            epoch, offset = self._start(self._pending)
            self.epoch, self.offset = epoch, offset + self._pending
            self._pending = 0

    def committed_samples(self) -> int:
        """Global samples of the step drawn last (all participating groups)."""
        return self._pending

    def set_epoch(self, epoch: int) -> None:
        """Epochs follow the position; kept for loops written for `ResumableSampler`."""

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "offset": self.offset, "seed": self.seed}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.epoch = int(state["epoch"])
        self.offset = int(state["offset"])
