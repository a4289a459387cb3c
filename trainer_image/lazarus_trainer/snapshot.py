"""Host copies of training state at a step boundary, so serialization can run in the background.

Copies go into buffers kept from the previous snapshot when the structure matches: fresh
allocations of hundreds of MB cost page faults (this machine hands freed memory back), a
`copy_` into warm memory costs a memcpy.
"""

from __future__ import annotations

import copy
from collections import OrderedDict
from typing import Any

import torch


def _fresh(t: torch.Tensor) -> torch.Tensor:
    t = t.detach()
    if t.device.type == "cpu":
        return t.clone()
    out = torch.empty(t.shape, dtype=t.dtype, pin_memory=torch.cuda.is_available())
    out.copy_(t, non_blocking=True)
    return out


def snapshot(obj: Any, reuse: Any = None) -> Any:
    """A deep host copy of `obj`; tensors are copied into `reuse`'s tensors where they match."""
    if isinstance(obj, torch.Tensor):
        if (
            isinstance(reuse, torch.Tensor)
            and reuse.shape == obj.shape
            and reuse.dtype == obj.dtype
            and reuse.device.type == "cpu"
        ):
            reuse.copy_(obj.detach(), non_blocking=obj.device.type != "cpu")
            return reuse
        return _fresh(obj)
    if isinstance(obj, dict):
        old = reuse if isinstance(reuse, dict) else {}
        out = OrderedDict() if isinstance(obj, OrderedDict) else {}
        for k, v in obj.items():
            out[k] = snapshot(v, old.get(k))
        return out
    if isinstance(obj, list | tuple):
        old_seq = reuse if isinstance(reuse, list | tuple) and len(reuse) == len(obj) else None
        items = [snapshot(v, old_seq[i] if old_seq else None) for i, v in enumerate(obj)]
        return items if isinstance(obj, list) else tuple(items)
    if isinstance(obj, int | float | str | bool | bytes | type(None)):
        return obj
    return copy.deepcopy(obj)


def synchronize() -> None:
    """Wait for non-blocking device-to-host copies before the host buffers are read."""
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def tensor_bytes(obj: Any) -> int:
    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, dict):
        return sum(tensor_bytes(v) for v in obj.values())
    if isinstance(obj, list | tuple):
        return sum(tensor_bytes(v) for v in obj)
    return 0
