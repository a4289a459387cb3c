"""Auto mode's choice of path under a fused optimizer (AdamW(fused=True), HF Trainer's
default), which writes parameters and its moments in place without moving their version
counters: full fine-tuning must go back to whole objects after its first save, and a frozen
part beside the trained one must still keep the chunked path."""

from __future__ import annotations

import pytest
import torch

from lazarus_trainer.dedup import worth
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
