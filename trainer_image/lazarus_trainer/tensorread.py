"""Reading trainer format 3's object layout (`tensorfile` writes it): every tensor a view
of the downloaded buffer, every header entry and tree node checked before it is used, so
a malformed or hostile file is an InvalidCheckpoint, never a crash or a huge allocation."""

from __future__ import annotations

import base64
import math
import struct
from collections import OrderedDict
from typing import Any, cast

import torch

from lazarus_contract.bounded_json import loads_bounded, one_line

from .storage import InvalidCheckpoint
from .tensorfile import (
    DTYPES,
    HEADER_DEPTH,
    MAX_DIMS,
    MAX_HEADER,
    TORCH_DTYPES,
    TREE_DEPTH,
    TREE_KEY,
)


def unpack(data: bytearray | memoryview, what: str) -> Any:
    """The state in `data` (a file of this layout); tensors are views of `data`, no copies.

    Anything malformed raises InvalidCheckpoint: the caller quarantines the checkpoint."""
    view = memoryview(data).cast("B")
    if len(view) < 8:
        raise InvalidCheckpoint(f"{what}: {len(view)} bytes, not a raw tensor file")
    (n,) = struct.unpack("<Q", view[:8])
    if n > min(MAX_HEADER, len(view) - 8):
        raise InvalidCheckpoint(f"{what}: header length {n} does not fit the {len(view)} bytes")
    try:
        head = loads_bounded(view[8 : 8 + n], max_bytes=MAX_HEADER, max_depth=HEADER_DEPTH)
        if not isinstance(head, dict):
            raise ValueError("the header is not a JSON object")
        tree = loads_bounded(head["__metadata__"][TREE_KEY], max_bytes=n, max_depth=TREE_DEPTH)
    except (ValueError, KeyError, TypeError) as exc:  # MalformedJSON is a ValueError
        raise InvalidCheckpoint(f"{what}: not a Lazarus raw tensor file ({exc})") from None
    data_start = 8 + n
    tensors: dict[str, torch.Tensor] = {}
    for name, spec in head.items():
        if name != "__metadata__":
            tensors[name] = _tensor(view, data, data_start, (name, spec), what)
    return _decode(tree, tensors, what)


def _tensor(
    view: memoryview, data: Any, start: int, entry: tuple[str, Any], what: str
) -> torch.Tensor:
    name, spec = entry
    dtype, shape, begin, end = _slot(spec, f"{what}: tensor {one_line(repr(name), 80)}")
    itemsize = torch.empty((), dtype=dtype).element_size()
    count = math.prod(shape)
    if end - begin != count * itemsize or start + end > len(view) or begin > end:
        raise InvalidCheckpoint(
            f"{what}: tensor {one_line(repr(name), 80)} ({spec['dtype']} {list(shape)}) does "
            f"not match its bytes [{begin}, {end}) of the {len(view) - start} after the header"
        )
    if count == 0:
        return torch.empty(shape, dtype=dtype)
    if (start + begin) % itemsize:  # another writer's unaligned file: one copy, aligned
        return torch.frombuffer(bytearray(view[start + begin : start + end]), dtype=dtype).view(
            shape
        )
    return torch.frombuffer(data, dtype=dtype, count=count, offset=start + begin).view(shape)


def _slot(spec: Any, where: str) -> tuple[torch.dtype, tuple[int, ...], int, int]:
    """A header entry's dtype, shape and offsets, each checked before any arithmetic:
    plain non-negative integers (no bools), few dimensions, every size within int64."""
    try:
        if not isinstance(spec, dict):
            raise TypeError("not a JSON object")
        dtype = DTYPES[spec["dtype"]]
        shape, offsets = spec["shape"], spec["data_offsets"]
        if not isinstance(shape, list) or len(shape) > MAX_DIMS:
            raise ValueError(f"shape is not a list of at most {MAX_DIMS} dimensions")
        if not isinstance(offsets, list) or len(offsets) != 2:
            raise ValueError("data_offsets is not [begin, end]")
        if not all(type(d) is int and 0 <= d < 1 << 63 for d in (*shape, *offsets)):
            raise ValueError("shape and offsets must be integers in [0, 2**63)")
        if math.prod(max(d, 1) for d in shape) >= 1 << 63:
            raise ValueError("shape has more than 2**63 elements")
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidCheckpoint(f"{where} is malformed ({one_line(str(exc), 100)})") from None
    return dtype, tuple(shape), offsets[0], offsets[1]


def _decode(x: Any, tensors: dict[str, torch.Tensor], what: str) -> Any:
    if x is None or type(x) in (bool, int, float, str):
        return x
    if type(x) is not dict or not isinstance(x.get("t"), str):
        raise InvalidCheckpoint(f"{what}: unknown value {one_line(str(x)[:200], 80)} in the tree")
    tag, v = x["t"], x.get("v")  # Any: a wrong type fails below as InvalidCheckpoint
    v = cast(Any, v)
    try:
        if tag == "tensor":
            return tensors[x["n"]]
        if tag in ("dict", "odict"):
            keys = [_decode(k, tensors, what) for k in x["k"]]
            values = [_decode(e, tensors, what) for e in v]
            if len(keys) != len(values):
                raise ValueError("keys and values differ in number")
            pairs = zip(keys, values, strict=True)
            return OrderedDict(pairs) if tag == "odict" else dict(pairs)
        if tag in ("list", "tuple", "set"):
            items = [_decode(e, tensors, what) for e in v]
            return items if tag == "list" else tuple(items) if tag == "tuple" else set(items)
        if tag == "float" and v in ("inf", "-inf", "nan"):
            return float(v)
        if tag == "bytes":
            return base64.b64decode(v, validate=True)
        if tag == "complex":
            return complex(float(v[0]), float(v[1]))
        if tag == "dtype":
            return TORCH_DTYPES[v]
        if tag == "device":
            return torch.device(v)
    except InvalidCheckpoint:
        raise
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        why = one_line(str(exc), 100)
        raise InvalidCheckpoint(
            f"{what}: malformed {tag[:20]!r} in the state tree ({why})"
        ) from None
    raise InvalidCheckpoint(f"{what}: unknown tag {tag[:20]!r} in the tree")
