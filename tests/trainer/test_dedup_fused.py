"""Auto mode's choice of path under a fused optimizer (AdamW(fused=True), HF Trainer's
default), which writes parameters and its moments in place without moving their version
counters: full fine-tuning must go back to whole objects after its first save, and a frozen
part beside the trained one must still keep the chunked path."""

from __future__ import annotations

import pytest
import torch

from lazarus_trainer.dedup import PROBE_EVERY, Hints, worth
from lazarus_trainer.tensorfile import Packed, pack

pytestmark = pytest.mark.unit


def _fused_step(model: torch.nn.Module, opt: torch.optim.Optimizer) -> None:
    model(torch.randn(4, 256)).sum().backward()
    opt.step()
    opt.zero_grad(set_to_none=False)


def _packs(frozen: bool) -> tuple[Packed, Packed]:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(256, 256), torch.nn.Linear(256, 256))
    if frozen:  # the first layer frozen and 8x the bytes of what trains below
        model = torch.nn.Sequential(torch.nn.Linear(256, 2048), torch.nn.Linear(2048, 4))
        model[0].requires_grad_(False)
    trained = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(trained, lr=0.1, fused=True)
    _fused_step(model, opt)
    first = pack({"model": model.state_dict(), "optimizer": opt.state_dict()})
    versions = [p._version for p in trained]
    _fused_step(model, opt)
    assert [p._version for p in trained] == versions  # what makes the counter useless here
    second = pack({"model": model.state_dict(), "optimizer": opt.state_dict()}, reuse=first)
    return first, second


def test_auto_stops_chunking_full_fine_tuning_with_a_fused_optimizer() -> None:
    first, second = _packs(frozen=False)
    assert second.generation == 1 and worth(first, "auto")
    assert not any(second.same[i] for i, s in enumerate(second.slots) if s.end > s.begin + 64)
    assert not worth(second, "auto") and worth(second, "on")


def test_auto_keeps_chunking_a_frozen_part_beside_a_fused_optimizer() -> None:
    _, second = _packs(frozen=True)
    assert worth(second, "auto")


@pytest.mark.parametrize(
    ("last_generation", "reused", "other_buffer", "later", "chunked"),
    [
        (1, 0.0, False, 1, False),  # a chunked save found nothing stored: off
        (1, 0.0, False, PROBE_EVERY, True),  # ... until it looks again
        (1, 0.5, False, 1, True),  # half was stored: chunks pay
        (0, 0.0, False, 1, True),  # the first save stores all: it proves nothing
        (1, 0.0, True, 1, True),  # another buffer's history says nothing of this one
    ],
)
def test_auto_goes_by_what_the_last_chunked_save_found_stored(
    last_generation: int, reused: float, other_buffer: bool, later: int, chunked: bool
) -> None:
    """Where `pack` cannot compare bytes (a device tensor) it goes by the version
    counter, which a fused optimizer does not move: every tensor then looks unchanged.
    The store's answer (bytes reused) is the check that does not depend on it."""
    t = torch.zeros(1 << 12)
    packed = pack({"t": t})
    for _ in range(last_generation + later):
        packed = pack({"t": t}, reuse=packed)
    assert all(packed.unchanged)  # the guess says: chunk it
    last = Hints(packed.buffer_id + (1 if other_buffer else 0), last_generation, {}, reused)
    assert worth(packed, "auto", last) is chunked
    assert worth(packed, "on", last) and not worth(packed, "off", last)
