"""The few collectives Lazarus needs, and a no-op stand-in for a single process."""

from __future__ import annotations

import os
from typing import Any

import torch
import torch.distributed as dist


class Collectives:
    """Rank/world plus the stop collective; single-process when torch.distributed is not up."""

    def __init__(self) -> None:
        self.active = dist.is_available() and dist.is_initialized()
        self.rank = dist.get_rank() if self.active else 0
        self.world_size = dist.get_world_size() if self.active else 1
        self._device = torch.device("cpu")
        self._ckpt_group: Any = None
        if self.active:
            if dist.get_backend() == "nccl":
                self._device = torch.device("cuda", torch.cuda.current_device())
            # Background saves gather their results on their own gloo group, so they never
            # interleave with the training loop's collectives on the default group.
            self._ckpt_group = dist.new_group(backend="gloo")

    @property
    def ckpt_group(self) -> Any:
        """The checkpoint side's own gloo group (None in a single process)."""
        return self._ckpt_group

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def is_local_leader(self) -> bool:
        """Rank 0, or local rank 0 of another node: each pod's launcher reads its files
        (the termination message and the progress signal)."""
        return self.is_main or os.environ.get("LOCAL_RANK") == "0"

    def max_flags(self, flags: list[int]) -> list[int]:
        """Element-wise max over ranks: one tiny all_reduce per step boundary."""
        if not self.active:
            return flags
        t = torch.tensor(flags, dtype=torch.int64, device=self._device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return [int(v) for v in t.tolist()]

    def main_decides(self, flag: bool) -> bool:
        """Rank 0's `flag` on every rank, so ranks whose inputs differ slightly never disagree."""
        return bool(self.max_flags([int(flag and self.is_main)])[0])

    def all_ok(self, ok: bool) -> bool:
        return self.max_flags([0 if ok else 1])[0] == 0

    def gather_to_main(self, obj: Any, background: bool = False) -> list[Any] | None:
        if not self.active:
            return [obj]
        group = self._ckpt_group if background else None
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj, group=group)
        return out if self.is_main else None

    def broadcast(self, obj: Any, background: bool = False) -> Any:
        if not self.active:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0, group=self._ckpt_group if background else None)
        return box[0]

    def barrier(self) -> None:
        if self.active:
            dist.barrier()
