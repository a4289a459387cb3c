"""Hypothesis strategies for what a writer of a shared root (or a careless tenant) can put
where Lazarus reads: a valid document cut short, bit-flipped, with absurd numbers, wrong
types, or nested thousands deep. Shared by every reader's property test (issue 22)."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import strategies as st

RAW = "\x00raw\x00"  # stands in for a value json.dumps cannot write (10**5000, bare NaN)

# Numbers and values a checked reader must refuse or take as they are, never crash on.
ABSURD: list[Any] = [
    2**63,
    2**64 + 1,
    -1,
    -(2**63) - 1,
    10**400,  # float() of it overflows
    1e308,
    True,
    False,
    None,
    0.5,
    "",
    "x" * 10_000,
    "\n\u2028line",
    [],
    {},
    [[[]]],
    {"t": "tensor"},
    [2**63, 2**63],
]
RAW_TEXTS = [b"NaN", b"-Infinity", b"1e999", b"9" * 5000, b"-0"]


def deep(depth: int, leaf: str = "1") -> str:
    return "[" * depth + leaf + "]" * depth


def _paths(doc: Any, at: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every place in `doc` a value sits (dict keys and list indices)."""
    out = [at]
    if isinstance(doc, dict):
        for k, v in doc.items():
            out += _paths(v, (*at, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc[:50]):
            out += _paths(v, (*at, i))
    return out


def _replace(doc: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    head, rest = path[0], path[1:]
    if isinstance(doc, dict):
        return {**doc, head: _replace(doc[head], rest, value)}
    return [_replace(v, rest, value) if i == head else v for i, v in enumerate(doc)]


def _dump(doc: Any, raw: bytes) -> bytes:
    return json.dumps(doc).encode().replace(json.dumps(RAW).encode(), raw)


@st.composite
def mutated(draw: st.DrawFn, base: bytes) -> bytes:
    """`base` (a JSON document) changed the way a hostile or broken writer would."""
    kind = draw(st.sampled_from(["truncate", "flip", "value", "raw", "nest", "drop", "junk"]))
    if kind == "truncate":
        return base[: draw(st.integers(0, max(0, len(base) - 1)))]
    if kind == "flip":
        data = bytearray(base)
        for _ in range(draw(st.integers(1, 8))):
            i = draw(st.integers(0, len(data) - 1))
            data[i] ^= 1 << draw(st.integers(0, 7))
        return bytes(data)
    if kind == "junk":
        return draw(st.binary(max_size=512))
    doc = json.loads(base)
    path = draw(st.sampled_from(_paths(doc)))
    if kind == "value":
        return _dump(_replace(doc, path, draw(st.sampled_from(ABSURD))), b"")
    if kind == "raw":
        return _dump(_replace(doc, path, RAW), draw(st.sampled_from(RAW_TEXTS)))
    if kind == "drop" and path:
        parent = _paths(doc)[0] if len(path) == 1 else path[:-1]
        holder: Any = doc
        for p in parent:
            holder = holder[p]
        holder = dict(holder) if isinstance(holder, dict) else list(holder)
        del holder[path[-1]]
        return _dump(_replace(doc, parent, holder), b"")
    depth = draw(st.sampled_from([40, 200, 1_000, 5_000, 100_000]))
    return _dump(_replace(doc, path, RAW), deep(depth).encode())
