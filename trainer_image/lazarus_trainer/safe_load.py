"""Loading a checkpoint never runs code: restricted unpickling only, and state that needs no more.

Whoever can write a checkpoint object can also write its manifest, so checksums prove
integrity, not trust. Every trainer object is read with `torch.load(weights_only=True)`
(tensors and plain Python values); DCP's pickled `.metadata` goes through `restricted_load`
with an explicit allow-list. A refused payload raises `InvalidCheckpoint`, so the caller's
fallback quarantines it and tries an older checkpoint. To keep that from ever hitting a
healthy checkpoint, `require_plain` refuses, at save time, state that could not be loaded.
"""

from __future__ import annotations

import importlib
import io
import pickle
import re
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from .storage import InvalidCheckpoint
from .termination import PermanentError

# Trainer format 1 pickled `np.random.get_state()` (a uint32 ndarray), and let numpy
# scalars and arrays through in metrics and extras; only reading such a checkpoint admits
# numpy's numeric arrays and scalars. numpy 1.x wrote `numpy.core`, numpy 2 `numpy._core`.
try:
    _MULTIARRAY = importlib.import_module("numpy._core.multiarray")
except ImportError:  # numpy 1.x
    _MULTIARRAY = importlib.import_module("numpy.core.multiarray")
_NUMERIC = "bool float16 float32 float64 complex64 complex128 " + " ".join(
    f"{u}int{bits}" for u in ("", "u") for bits in (8, 16, 32, 64)
)
LEGACY_NUMPY_GLOBALS: list[Any] = [
    np.ndarray,
    np.dtype,
    *[
        (getattr(_MULTIARRAY, f), f"numpy.{m}.multiarray.{f}")
        for f in ("_reconstruct", "scalar")
        for m in ("_core", "core")
    ],
    # numpy 2 pickles a dtype's class too (numpy.dtypes.UInt32DType, ...)
    *{type(np.dtype(t)) for t in _NUMERIC.split()},
]
LEGACY_HINT = (
    "; a trainer format 1 checkpoint admits only numpy arrays and scalars besides tensors and "
    "plain values: resume from a format 2 checkpoint or start fresh"
)

_REFUSED_GLOBAL = re.compile(r"Unsupported global: GLOBAL (\S+)")
_PLAIN_LEAVES = (int, float, str, bool, bytes, complex, type(None), torch.dtype, torch.device)


def _why(exc: BaseException) -> str:
    """One line: the refused global if that was it (torch's message suggests unsafe loading)."""
    text = str(exc)
    m = _REFUSED_GLOBAL.search(text)
    if m:
        return f"refused to unpickle {m.group(1)} (only tensors and plain values are loaded)"
    tail = text.rsplit("WeightsUnpickler error:", maxsplit=1)[-1].strip().splitlines()
    return f"{type(exc).__name__}: {tail[0] if tail else text}"[:300]


def load_plain(data: bytes | io.BytesIO, what: str, *, legacy_numpy: bool = False) -> Any:
    """`torch.load(weights_only=True)`; any failure (a refused global first) is invalid data."""
    buf = data if isinstance(data, io.BytesIO) else io.BytesIO(data)
    try:
        if legacy_numpy:
            with torch.serialization.safe_globals(LEGACY_NUMPY_GLOBALS):
                return torch.load(buf, map_location="cpu", weights_only=True)
        return torch.load(buf, map_location="cpu", weights_only=True)
    except Exception as exc:
        hint = LEGACY_HINT if legacy_numpy else ""
        raise InvalidCheckpoint(f"{what}: {_why(exc)}{hint}") from None


class _Restricted(pickle.Unpickler):
    def __init__(self, data: bytes, allowed: Mapping[tuple[str, str], Any], what: str) -> None:
        super().__init__(io.BytesIO(data))
        self._allowed = allowed
        self._what = what

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise InvalidCheckpoint(
                f"{self._what}: refused to unpickle {module}.{name} (not in its allow-list)"
            ) from None

    def persistent_load(self, pid: Any) -> Any:
        raise InvalidCheckpoint(f"{self._what}: refused a persistent id in a pickle")


def restricted_load(data: bytes, allowed: Mapping[tuple[str, str], Any], what: str) -> Any:
    """Unpickle with every global looked up in `allowed` (the objects, never imported by name)."""
    try:
        return _Restricted(data, allowed, what).load()
    except InvalidCheckpoint:
        raise
    except Exception as exc:
        raise InvalidCheckpoint(
            f"{what}: unreadable pickle ({type(exc).__name__}: {exc})"
        ) from None


def require_plain(obj: Any, where: str) -> None:
    """Refuse (permanently, naming the path) state that `load_plain` could not read back.

    Checked at capture, before anything is written: a value saved today that the loader
    refuses tomorrow would quarantine every checkpoint of the run.
    """
    stack: list[tuple[Any, str]] = [(obj, where)]
    while stack:
        x, path = stack.pop()
        if isinstance(x, torch.Tensor) or type(x) in _PLAIN_LEAVES:
            continue
        if isinstance(x, dict):  # snapshots turn dict subclasses into dict/OrderedDict
            for k, v in x.items():
                stack.append((k, f"{path} key {k!r}"))
                stack.append((v, f"{path}[{k!r}]"))
        elif isinstance(x, list | tuple | set):  # and named tuples into tuples
            stack.extend((v, f"{path}[{i}]") for i, v in enumerate(x))
        else:
            kind = f"{type(x).__module__}.{type(x).__qualname__}"
            raise PermanentError(
                f"{path} is a {kind}: checkpoint state may hold only tensors and plain Python "
                "values (dict, list, tuple, str, int, float, bool, None), because loading "
                "never runs code; convert it (e.g. torch.from_numpy(a), a.tolist(), float(x))"
            )
