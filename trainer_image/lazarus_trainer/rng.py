"""RNG state of python, numpy, torch CPU and every CUDA device: per rank, never resharded.

Captured as tensors and plain values only, so loading it needs no unpickling allow-list
(trainer format 2). Format 1 pickled numpy's state tuple with its ndarray; both restore.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np
import torch

T = TypeVar("T")


def capture_numpy() -> dict[str, Any]:
    name, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    return {
        "bit_generator": str(name),
        "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),  # uint32 values
        "pos": int(pos),
        "has_gauss": int(has_gauss),
        "cached_gaussian": float(cached),
    }


def numpy_state(saved: Any) -> tuple[str, np.ndarray[Any, Any], int, int, float]:
    """The tuple `np.random.set_state` takes, from either format's saved state."""
    if isinstance(saved, dict):
        keys = np.asarray(saved["keys"].numpy(), dtype=np.uint32)
        return (
            str(saved["bit_generator"]),
            keys,
            int(saved["pos"]),
            int(saved["has_gauss"]),
            float(saved["cached_gaussian"]),
        )
    name, keys, pos, has_gauss, cached = saved  # format 1: get_state()'s own tuple
    return str(name), np.asarray(keys, dtype=np.uint32), int(pos), int(has_gauss), float(cached)


def capture_rng() -> dict[str, Any]:
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": capture_numpy(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(numpy_state(state["numpy"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        cuda_states = state["cuda"]
        # A pod may come back with fewer devices: restore what maps, the rest keep their seed.
        for i in range(min(len(cuda_states), torch.cuda.device_count())):
            torch.cuda.set_rng_state(cuda_states[i], i)


def seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class FetchRng:
    """The RNG at a prefetching data loader's fetches, so that a resume fetches what the
    uninterrupted run fetched.

    A loader that fetches ahead of training (Accelerate's `DataLoaderShard` holds one batch
    back to know which is last) draws a fetched batch's randomness (a masking collate_fn,
    random augmentation) before the steps that come before it: at a step boundary the global
    RNG is already past those draws. So each fetch records the state before it; a checkpoint
    keeps those of the batches fetched but not yet used by a step (per rank: registered in
    `Registry.rank_extras`), and a resume fetches those batches again from them, then goes
    on from the boundary's state. Its hooks: Accelerate's dataset and collate_fn
    (adapters/accelerate.py), HF Trainer's loader iterators (adapters/hf_fetch.py)."""

    def __init__(self) -> None:
        self.fetched: list[dict[str, Any]] = []  # the state before each fetch not yet used
        self._restores: list[dict[str, Any]] = []  # armed: before each refetch, then after

    def before_fetch(self) -> None:
        if len(self._restores) > 1:
            restore_rng(self._restores.pop(0))
        self.fetched.append(capture_rng())

    def after_fetch(self) -> None:
        if len(self._restores) == 1:  # the batches fetched ahead are fetched again
            restore_rng(self._restores.pop())

    def record(self, fetch: Callable[[], T]) -> T:
        """One fetch made by a single call; one that raises StopIteration fetched nothing
        (and a batch that is not there again leaves nothing to restore)."""
        self.before_fetch()
        try:
            data = fetch()
        except StopIteration:
            self.fetched.pop()
            self._restores = []
            raise
        self.after_fetch()
        return data

    def used(self, batches: int) -> None:
        """A step used the oldest `batches` fetched batches."""
        del self.fetched[:batches]

    def state_dict(self) -> dict[str, Any]:
        return {"pending": list(self.fetched)}

    def load_state_dict(self, state: dict[str, Any], /) -> None:
        """Loaded right after this rank's RNG, which is therefore the boundary's."""
        self.arm(list(state["pending"]), capture_rng())

    def arm(self, pending: list[dict[str, Any]], boundary: dict[str, Any]) -> None:
        """After a resume: the next fetches draw from `pending`, what follows from `boundary`.
        With nothing pending the checkpoint ended an epoch: the restore at resume is right,
        and what the loop draws before its first fetch is drawn as the uninterrupted run did."""
        self._restores = [*pending, boundary] if pending else []
        self.fetched = []
