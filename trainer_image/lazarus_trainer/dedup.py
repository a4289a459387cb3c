"""Which pieces of a packed object to store as shared chunks, and which need no hashing.

A piece is a run of whole tensors (big tensors split) of at most `piece_size` bytes, so
a frozen or unchanged tensor keeps its piece, and its chunk, from save to save. A piece
whose every tensor `pack` found byte-equal to the previous pack of the same buffer keeps
that pack's chunk without being hashed; every other piece is hashed, and stored only if
no earlier checkpoint of the job stored the same bytes (lazarus_store.chunked).
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from lazarus_store.chunked import Piece
from lazarus_store.manifest import Chunk

from .tensorfile import Packed

ENV_DEDUP = "LAZARUS_SAVE_DEDUP"
PROBE_EVERY = 16  # packs between looks again, once a chunked save found nothing stored


def mode(env: Mapping[str, str] | None = None) -> str:
    """LAZARUS_SAVE_DEDUP: `auto` (default), `on` or `off` (docs/performance.md)."""
    value = (os.environ if env is None else env).get(ENV_DEDUP, "auto").strip().lower()
    if value in ("0", "false", "no", "off"):
        return "off"
    return "on" if value in ("1", "true", "yes", "on") else "auto"


def worth(packed: Packed, how: str, last: Hints | None = None) -> bool:
    """Whether to store `packed` as chunks. `auto`: its first pack (to learn what does not
    change), then only while at least an eighth of its bytes are unchanged (`unchanged`: a
    CPU tensor's bytes compared equal, a device tensor's version counter and address not
    moved): with everything changing, hashing is pure cost (full fine-tuning: +28% time
    to durable, docs/performance.md), and the whole object goes as before. A choice of
    path only: what is reused is decided by bytes compared or hashed, never by the counter.

    `last`: the hints of the last chunked save of this buffer. When a save after the
    first found less than an eighth of its bytes already stored, the guess above was
    wrong (a device tensor updated in place without moving its counter, as fused
    optimizers do): chunks stay off until `PROBE_EVERY` packs later, when one save
    looks again."""
    if how != "auto":
        return how == "on"
    if packed.generation == 0:
        return True
    if (
        last is not None
        and last.buffer_id == packed.buffer_id
        and last.generation > 0
        and last.reused * 8 < 1
        and packed.generation - last.generation < PROBE_EVERY
    ):
        return False
    data = sum(s.end - s.begin for s in packed.slots)
    same = sum(s.end - s.begin for s, ok in zip(packed.slots, packed.unchanged, strict=True) if ok)
    return data > 0 and same * 8 >= data


def cuts(bounds: list[int], size: int, piece_size: int) -> list[tuple[int, int]]:
    """(offset, size) of each piece of [0, size): a tensor of at least `piece_size // 16`
    bytes is pieces of its own (split at multiples of `piece_size` from its start), so
    a frozen one keeps its chunks whatever its neighbours do; runs of smaller segments
    between `bounds` (tensor boundaries) are merged up to `piece_size`."""
    alone = max(1, piece_size // 16)
    segs: list[tuple[int, int]] = []
    edges = sorted({0, size, *(b for b in bounds if 0 < b < size)})
    for a, b in itertools.pairwise(edges):
        segs += [(o, min(piece_size, b - o)) for o in range(a, b, piece_size)]
    out: list[tuple[int, int]] = []
    small = False  # whether the last run is made of small segments
    for off, n in segs:
        if small and n < alone and out[-1][1] + n <= piece_size:
            out[-1] = (out[-1][0], out[-1][1] + n)
        else:
            out.append((off, n))
            small = n < alone
    return out


@dataclass
class Hints:
    """The chunks of the last pieces stored from one buffer, by (offset, size)."""

    buffer_id: int = -1
    generation: int = -1
    chunks: dict[tuple[int, int], Chunk] = field(default_factory=dict)
    reused: float = 1.0  # the share of that save's bytes already stored (not uploaded)


def pieces(packed: Packed, piece_size: int, hints: Hints | None) -> list[Piece]:
    """`packed` as pieces; those whose tensors are all unchanged since the pack `hints`
    describes carry that pack's chunk (`Piece.known`)."""
    cap = packed.header_capacity
    bounds = [cap + s.begin for s in packed.slots] + [cap + s.end for s in packed.slots]
    out = []
    usable = (
        hints is not None
        and hints.buffer_id == packed.buffer_id
        and hints.generation == packed.generation - 1
    )
    for off, n in cuts(bounds, packed.nbytes, piece_size):
        known = hints.chunks.get((off, n)) if usable and hints is not None else None
        if known is not None and not _all_same(packed, off, off + n):
            known = None
        out.append(Piece(off, n, known))
    return out


def _all_same(packed: Packed, begin: int, end: int) -> bool:
    """Every byte of [begin, end) lies in tensors `pack` found unchanged (not the header)."""
    if begin < packed.header_capacity:
        return False
    cap = packed.header_capacity
    return all(
        same
        for s, same in zip(packed.slots, packed.same, strict=True)
        if cap + s.begin < end and cap + s.end > begin
    )


def remember(
    packed: Packed, done: list[Piece], chunks: tuple[Chunk, ...], reused: float = 1.0
) -> Hints:
    """The hints for the next pack of the same buffer; `reused`: the share of this
    save's bytes that earlier checkpoints had stored."""
    return Hints(
        packed.buffer_id,
        packed.generation,
        {(p.offset, p.size): c for p, c in zip(done, chunks, strict=True)},
        reused,
    )
