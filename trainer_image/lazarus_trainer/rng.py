"""RNG state of python, numpy, torch CPU and every CUDA device: per rank, never resharded.

Captured as tensors and plain values only, so loading it needs no unpickling allow-list
(trainer format 2). Format 1 pickled numpy's state tuple with its ndarray; both restore.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch


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
