"""Trainer format 3's object layout: safetensors' file layout, packed into one reused host buffer.

A file is an 8-byte little-endian header length N, N bytes of JSON header (padded with
spaces), then every tensor's raw bytes: exactly safetensors' layout, so `safetensors` and
its tools read these files. The header maps each tensor's name to its `dtype`, `shape` and
`data_offsets` (relative to the data section); its `__metadata__["lazarus.tree"]` holds the
rest of the state as JSON, with every container tagged (`{"t": "dict", "k": [...], "v":
[...]}`, `list`, `tuple`, `set`, `odict`) and the few non-JSON leaves too (`tensor` by
name, `float` for inf/nan, `bytes`, `complex`, `dtype`, `device`), so a load gives back
the same Python types (int dict keys of optimizer state, tuples of betas) and runs no code.

Saving copies each tensor into its slice of one buffer laid out as the file (pinned when
CUDA is present; device-to-host copies are non-blocking), kept for the next save while the
tensors' names, dtypes and shapes stay the same: the stall is one copy into warm memory,
and the background write sends the buffer as it is (no serialization, no slice copies).
Tensors are ordered by element size, largest first, so each starts aligned to its element
size with no gaps; the header has slack so a growing tree rarely moves the data.

Loading (`tensorread`) views every tensor straight out of the downloaded buffer
(`torch.frombuffer`, no copy); `load_state_dict` then copies into the live tensors as it must.
"""

from __future__ import annotations

import base64
import itertools
import json
import math
import struct
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, cast

import torch

from .tensor_reuse import refresh, stamp
from .termination import PermanentError

TREE_KEY = "lazarus.tree"
HEADER_ALIGN = 4096  # the data section starts page-aligned
MAX_HEADER = 64 << 20  # a header larger than this is not ours
# Bounds on what a file may ask of its reader (someone else may have written it): the
# header nests 3 deep; the tree 2 JSON levels per container, so saves refuse state nested
# deeper than MAX_NESTING containers, which then always loads back; a shape has at most
# MAX_DIMS dimensions, and its element count (zero dimensions counted as one) fits int64.
HEADER_DEPTH = 4
TREE_DEPTH = 256
MAX_NESTING = (TREE_DEPTH - 2) // 2
MAX_DIMS = 64

DTYPES: dict[str, torch.dtype] = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
    "F8_E4M3": torch.float8_e4m3fn,
    "F8_E5M2": torch.float8_e5m2,
    "C64": torch.complex64,
    "U64": torch.uint64,
    "U32": torch.uint32,
    "U16": torch.uint16,
}
_NAMES = {v: k for k, v in DTYPES.items()}
TORCH_DTYPES = {
    str(d).removeprefix("torch."): d for d in vars(torch).values() if isinstance(d, torch.dtype)
}


_BUFFER_IDS = itertools.count()


@dataclass(frozen=True)
class Slot:
    """Where one tensor lives in the file: byte offsets relative to the data section."""

    name: str
    dtype: torch.dtype
    shape: tuple[int, ...]
    begin: int
    end: int


@dataclass
class Packed:
    """One file's bytes in a host buffer: `view()` is the whole object, ready to write."""

    buffer: torch.Tensor  # uint8, header capacity + data
    header_capacity: int  # bytes before the data section (the 8-byte length included)
    slots: tuple[Slot, ...]
    # Counts the packs into this buffer; `same[i]`: slot i's bytes are those the previous
    # pack (generation - 1) left there, compared byte for byte (never trusted from
    # `_version` alone: in-place changes through `.data` do not move it).
    generation: int = 0
    same: tuple[bool, ...] = ()
    stamps: tuple[tuple[int, int] | None, ...] = ()  # (_version, data_ptr) of the sources
    steady: tuple[bool, ...] = ()  # stamp unchanged since the previous pack (a hint only)
    # auto mode's unchanged (dedup.worth): `same` on CPU, `steady` on a device (tensor_reuse)
    unchanged: tuple[bool, ...] = ()
    buffer_id: int = field(default_factory=lambda: next(_BUFFER_IDS))  # unique per allocation

    @property
    def signature(self) -> tuple[tuple[torch.dtype, tuple[int, ...]], ...]:
        return tuple((s.dtype, s.shape) for s in self.slots)

    @property
    def nbytes(self) -> int:
        return int(self.buffer.numel())

    def view(self) -> memoryview:
        return memoryview(cast(Any, self.buffer.numpy())).cast("B")

    def tensor_at(self, slot: Slot) -> torch.Tensor:
        start = self.header_capacity + slot.begin
        return (
            self.buffer[start : self.header_capacity + slot.end].view(slot.dtype).view(slot.shape)
        )


def _encode(x: Any, tensors: list[tuple[str, torch.Tensor]], path: str, depth: int = 0) -> Any:
    """The JSON form of `x`; tensors are appended to `tensors` and referenced by name."""
    if depth > MAX_NESTING:
        raise PermanentError(
            f"{path or 'state'} nests containers deeper than {MAX_NESTING}: not storable"
        )
    if x is None or type(x) in (bool, int, str):
        return x
    if type(x) is float:
        return x if math.isfinite(x) else {"t": "float", "v": repr(x)}
    if isinstance(x, torch.Tensor):
        name = f"{len(tensors):06d}{path}"
        tensors.append((name, x))
        return {"t": "tensor", "n": name}
    if isinstance(x, dict):
        tag = "odict" if isinstance(x, OrderedDict) else "dict"
        keys, values = [], []
        for k, v in x.items():
            keys.append(_encode(k, tensors, path, depth + 1))
            values.append(_encode(v, tensors, f"{path}.{k}", depth + 1))
        return {"t": tag, "k": keys, "v": values}
    if isinstance(x, list | tuple | set):
        tag = "list" if isinstance(x, list) else "tuple" if isinstance(x, tuple) else "set"
        items = [_encode(v, tensors, f"{path}.{i}", depth + 1) for i, v in enumerate(x)]
        return {"t": tag, "v": items}
    if type(x) is bytes:
        return {"t": "bytes", "v": base64.b64encode(x).decode("ascii")}
    if type(x) is complex:
        return {"t": "complex", "v": [repr(x.real), repr(x.imag)]}
    if isinstance(x, torch.dtype):
        return {"t": "dtype", "v": str(x).removeprefix("torch.")}
    if isinstance(x, torch.device):
        return {"t": "device", "v": str(x)}
    kind = f"{type(x).__module__}.{type(x).__qualname__}"
    raise PermanentError(f"{path or 'state'} is a {kind}: not storable in the raw layout")


def _layout(tensors: list[tuple[str, torch.Tensor]]) -> tuple[Slot, ...]:
    # Largest element size first: every tensor then starts aligned to its own element size
    # (sizes are multiples of it) and the file has no holes, as safetensors requires.
    order = sorted(range(len(tensors)), key=lambda i: -tensors[i][1].element_size())
    slots, off = [], 0
    for i in order:
        name, t = tensors[i]
        if t.dtype not in _NAMES:
            raise PermanentError(f"tensor {name[6:] or name} has dtype {t.dtype}: not storable")
        n = t.numel() * t.element_size()
        slots.append(Slot(name, t.dtype, tuple(t.shape), off, off + n))
        off += n
    return tuple(slots)


def _header(slots: tuple[Slot, ...], tree: Any) -> bytes:
    head: dict[str, Any] = {
        s.name: {"dtype": _NAMES[s.dtype], "shape": list(s.shape), "data_offsets": [s.begin, s.end]}
        for s in slots
    }
    head["__metadata__"] = {TREE_KEY: json.dumps(tree, separators=(",", ":"), allow_nan=False)}
    return json.dumps(head, separators=(",", ":"), allow_nan=False).encode()


def _capacity(header_len: int) -> int:
    slack = max(HEADER_ALIGN, header_len // 4)  # room for the tree to grow between saves
    return -(-(8 + header_len + slack) // HEADER_ALIGN) * HEADER_ALIGN


def pack(state: Any, reuse: Packed | None = None) -> Packed:
    """`state` as one file in a host buffer; `reuse`'s buffer when the tensors still match.

    The caller synchronizes CUDA (snapshot.synchronize) before the buffer is read."""
    tensors: list[tuple[str, torch.Tensor]] = []
    tree = _encode(state, tensors, "")
    slots = _layout(tensors)
    header = _header(slots, tree)
    signature = tuple((s.dtype, s.shape) for s in slots)
    by_name = dict(tensors)
    stamps = tuple(stamp(by_name[s.name]) for s in slots)
    if (
        reuse is not None
        and reuse.signature == signature
        and len(header) + 8 <= reuse.header_capacity
    ):
        old = reuse.stamps or (None,) * len(slots)
        steady = tuple(st is not None and st == o for st, o in zip(stamps, old, strict=True))
        same = tuple(
            refresh(reuse.tensor_at(s), by_name[s.name], hint)
            for s, hint in zip(slots, steady, strict=True)
        )
        devs = (by_name[s.name].device.type != "cpu" for s in slots)
        unchanged = tuple(sm or (st and d) for sm, st, d in zip(same, steady, devs, strict=True))
        packed = Packed(
            reuse.buffer,
            reuse.header_capacity,
            slots,
            reuse.generation + 1,
            same,
            stamps,
            steady,
            unchanged,
            reuse.buffer_id,
        )
    else:
        cap = _capacity(len(header))
        size = cap + (slots[-1].end if slots else 0)
        buf = torch.empty(size, dtype=torch.uint8, pin_memory=torch.cuda.is_available())
        none = (False,) * len(slots)
        packed = Packed(buf, cap, slots, 0, none, stamps, none, none)
        for slot in slots:
            src = by_name[slot.name].detach()
            packed.tensor_at(slot).copy_(src, non_blocking=src.device.type == "cuda")
    view = packed.view()
    n = packed.header_capacity - 8
    view[:8] = struct.pack("<Q", n)
    view[8 : 8 + len(header)] = header
    view[8 + len(header) : packed.header_capacity] = b" " * (n - len(header))
    return packed
