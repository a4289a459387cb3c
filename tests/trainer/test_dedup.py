"""Content-addressed saves in the trainer (issue 27): how a packed object is cut into
pieces, which pieces skip hashing, and that a "frozen" tensor changed in place is saved
anew however it was changed, including through `.data`, which does not move `_version`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from lazarus_trainer import Lazarus, LazarusConfig
from lazarus_trainer.dedup import Hints, cuts, pieces, remember
from lazarus_trainer.state import COMMON_OBJECT
from lazarus_trainer.tensorfile import pack
from lazarus_trainer.tensorread import unpack

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("bounds", "size", "piece", "want"),
    [
        ([], 100, 40, [(0, 40), (40, 40), (80, 20)]),  # one long tensor: split
        ([1, 2, 3, 50], 60, 40, [(0, 3), (3, 40), (43, 7), (50, 10)]),  # small ones merge
        ([2, 12, 14], 16, 64, [(0, 2), (2, 10), (12, 4)]),  # a big one (>= 64/16) stands alone
        ([1, 2, 3], 4, 64, [(0, 4)]),  # small tensors: one run up to a piece
        ([4, 4, 8], 8, 128, [(0, 8)]),  # a zero-size tensor is no boundary
    ],
)
def test_cuts(bounds: list[int], size: int, piece: int, want: list[tuple[int, int]]) -> None:
    assert cuts(bounds, size, piece) == want


# How each in-place change reaches the version counter (measured, torch 2.x): `.data`
# gives a tensor with a counter of its own, so the parameter's does not move.
CHANGES: list[tuple[str, Callable[[torch.Tensor], Any], bool]] = [
    ("in place", lambda p: p.add_(1), True),
    ("no_grad in place", lambda p: _no_grad(p.mul_, 3), True),
    (".data in place", lambda p: p.data.add_(1), False),
    (".data copy_", lambda p: p.data.copy_(torch.full_like(p, 7.0)), False),
]


def _no_grad(fn: Callable[[int], Any], arg: int) -> None:
    with torch.no_grad():
        fn(arg)


@pytest.mark.parametrize(("how", "change", "moves"), CHANGES, ids=[c[0] for c in CHANGES])
def test_a_frozen_tensor_changed_in_place_is_packed_anew(
    how: str, change: Callable[[torch.Tensor], Any], moves: bool
) -> None:
    frozen = torch.nn.Parameter(torch.arange(4096, dtype=torch.float32), requires_grad=False)
    first = pack({"w": frozen.detach()})
    again = pack({"w": frozen.detach()}, reuse=first)
    assert again.same == (True,)  # unchanged: no copy, its chunk keeps its hash
    version = frozen._version
    change(frozen)
    assert (frozen._version != version) is moves  # the finding the skip must not trust
    third = pack({"w": frozen.detach()}, reuse=again)
    assert third.same == (False,)
    assert torch.equal(unpack(bytearray(third.view()), "t")["w"], frozen.detach())


def test_only_pieces_of_unchanged_tensors_skip_hashing() -> None:
    frozen, trained = torch.zeros(1 << 14), torch.zeros(1 << 14)
    p1 = pack({"a": frozen, "b": trained})
    size = 1 << 16  # one piece per tensor (64 KiB each), the header apart
    hints = remember(p1, pieces(p1, size, None), tuple(_fake(n) for n in range(3)))
    trained.add_(1)
    p2 = pack({"a": frozen, "b": trained}, reuse=p1)
    known = [p.known is not None for p in pieces(p2, size, hints)]
    assert known == [False, True, False]  # the header, a (frozen), b (trained)
    stale = Hints(hints.buffer_id, hints.generation - 1, hints.chunks)  # a failed save between
    assert not any(p.known for p in pieces(p2, size, stale))


def _fake(n: int) -> Any:
    from lazarus_store.manifest import Chunk

    return Chunk(f"{n:064x}", 0, "AAAAAA==")


@pytest.mark.parametrize("how", [".data", "no_grad"])
def test_a_frozen_weight_changed_in_place_is_saved(tmp_path: Path, how: str) -> None:
    """End to end through the store: the second save references the frozen weight's
    chunks; after an in-place change (through `.data`: no version bump) the third save
    holds the new bytes, uploaded, not referenced."""
    torch.manual_seed(0)
    emb, lin = torch.nn.Embedding(4096, 64), torch.nn.Linear(64, 64)
    net = torch.nn.Sequential(emb, lin)
    emb.weight.requires_grad_(False)
    opt = torch.optim.SGD([p for p in net.parameters() if p.requires_grad], lr=0.1)
    lz = Lazarus(
        LazarusConfig(
            checkpoint_uri=str(tmp_path),
            attempt=1,
            async_save=False,
            handle_signals=False,
            save_at_end=False,
            keep_latest=5,
        )
    )
    lz.register(model=net, optimizer=opt)
    names, sent = [], []
    for step in (1, 2, 3):
        if step == 3 and how == ".data":
            emb.weight.data.mul_(-1)
        elif step == 3:
            _no_grad(emb.weight.mul_, -1)
        net(torch.randint(0, 4096, (4,))).sum().backward()
        opt.step()
        lz.run.progress.step = step
        out = lz.pipeline.save("periodic", sync=True)
        assert out is not None and out.name is not None
        names.append(out.name)
        sent.append(_new_chunk_bytes(lz, names))
    size = 4096 * 64 * 4
    assert sent[1] < size / 2 < sent[2]  # referenced at step 2, uploaded again at step 3
    state = unpack(lz.storage.read_buffer(names[2], COMMON_OBJECT), "t")
    assert torch.equal(state["models"]["model"]["0.weight"], emb.weight.detach())


def _new_chunk_bytes(lz: Lazarus, names: list[str]) -> int:
    """Bytes the newest save stored anew: its own objects and chunks no earlier had."""

    def chunks(name: str) -> dict[str, int]:
        m = lz.storage.read_manifest(name)
        return {c.sha256: c.size for o in m.objects for c in o.chunks}

    before = {d for n in names[:-1] for d in chunks(n)}
    own = lz.storage.read_manifest(names[-1]).own_bytes
    return own + sum(s for d, s in chunks(names[-1]).items() if d not in before)


def _lazarus(root: Path, attempt: int, resume: str, net: torch.nn.Module) -> Lazarus:
    cfg = LazarusConfig(
        checkpoint_uri=str(root), attempt=attempt, async_save=False, resume_from=resume,
        handle_signals=False, save_at_end=False, keep_latest=5,
    )  # fmt: skip
    lz = Lazarus(cfg)
    lz.register(model=net)
    return lz


def test_a_whole_object_checkpoint_resumes_into_a_chunked_run(tmp_path: Path) -> None:
    """The old layout (whole objects, manifest schema 1) loads, and the next save, as
    chunks, is a checkpoint that loads too."""
    torch.manual_seed(0)
    saved = torch.nn.Linear(512, 512)
    old = _lazarus(tmp_path, 1, "", saved)
    old.pipeline.committer.dedup = "off"
    old.run.progress.step = 1
    first = old.pipeline.save("periodic", sync=True)
    assert first is not None and first.name is not None
    assert old.storage.read_manifest(first.name).schema_version == 1
    fresh = torch.nn.Linear(512, 512)
    new = _lazarus(tmp_path, 2, "auto", fresh)
    new.resume()
    assert torch.equal(fresh.weight, saved.weight) and new.step_count == 1
    new.run.progress.step = 2
    second = new.pipeline.save("periodic", sync=True)
    assert second is not None and second.name is not None
    assert new.storage.read_manifest(second.name).schema_version == 2
    state = unpack(new.storage.read_buffer(second.name, COMMON_OBJECT), "t")
    assert torch.equal(state["models"]["model"]["weight"], saved.weight.detach())


def test_a_corrupt_shared_chunk_makes_the_resume_skip_every_checkpoint_using_it(
    tmp_path: Path,
) -> None:
    """Steps 2 and 3 share the frozen embedding's chunks; one of them corrupted (same
    size), the resume quarantines both and falls back to step 1 (whole objects)."""
    torch.manual_seed(0)
    emb, lin = torch.nn.Embedding(4096, 64), torch.nn.Linear(64, 64)
    emb.weight.requires_grad_(False)
    net = torch.nn.Sequential(emb, lin)
    lz = _lazarus(tmp_path, 1, "", net)
    names = []
    for step, how in ((1, "off"), (2, "on"), (3, "on")):
        lz.pipeline.committer.dedup = how
        with torch.no_grad():
            lin.weight.add_(1.0)
        lz.run.progress.step = step
        out = lz.pipeline.save("periodic", sync=True)
        assert out is not None and out.name is not None
        names.append(out.name)
    chunks = [set(lz.storage.read_manifest(n).chunk_digests()) for n in names[1:]]
    shared_digest = max(chunks[0] & chunks[1])
    blob = tmp_path / "_lazarus" / "shared" / "-" / shared_digest
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0xFF
    blob.write_bytes(bytes(data))
    fresh = torch.nn.Sequential(torch.nn.Embedding(4096, 64), torch.nn.Linear(64, 64))
    again = _lazarus(tmp_path, 2, "auto", fresh)
    again.resume()
    assert again.step_count == 1
    assert all(again.storage.store.is_quarantined(n) for n in names[1:])
    assert not again.storage.store.is_quarantined(names[0])


def test_auto_chunks_the_first_save_then_only_while_an_eighth_stays_put() -> None:
    from lazarus_trainer.dedup import worth

    frozen, trained = torch.zeros(1 << 12), torch.zeros(1 << 12)
    first = pack({"a": frozen, "b": trained})
    assert worth(first, "auto") and not worth(first, "off") and worth(first, "on")
    trained.add_(1)
    half = pack({"a": frozen, "b": trained}, reuse=first)
    assert worth(half, "auto")  # half the bytes did not move
    frozen.add_(1)
    trained.add_(1)
    moved = pack({"a": frozen, "b": trained}, reuse=half)
    assert not worth(moved, "auto") and worth(moved, "on")
