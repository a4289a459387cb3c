"""When `lz.step()` may save a DeepSpeed engine: the counters that say it holds gradients no
optimizer step applied yet (table), and one optimizer step per `lz.step()` (the counters are
DeepSpeed 0.19's `DeepSpeedEngine` attributes; the real engine is in
test_deepspeed_accum_e2e.py)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from lazarus_trainer import PermanentError
from lazarus_trainer.adapters import deepspeed as ds

pytestmark = pytest.mark.unit


def _engine(
    gas: int = 1,
    micro: int = 0,
    *,
    managed: bool | None = True,
    unmanaged_backwards: int = 0,
    override: bool | None = None,
    zenflow: bool = False,
    global_steps: int = 0,
) -> Any:
    engine = SimpleNamespace(
        gradient_accumulation_steps=lambda: gas,
        micro_steps=micro,
        _unmanaged_backward_count=unmanaged_backwards,
        _is_gradient_accumulation_boundary=override,
        zenflow=zenflow,
        global_steps=global_steps,
    )
    if managed is not None:  # None: a DeepSpeed before managed_gradient_accumulation
        engine.managed_gradient_accumulation = lambda: managed
    return engine


@pytest.mark.parametrize(
    ("engine", "held"),
    [
        (_engine(gas=4, micro=8), None),
        (_engine(gas=4, micro=6), "2 of gradient_accumulation_steps=4 micro-batches"),
        (_engine(gas=4, micro=3, managed=None), "3 of gradient_accumulation_steps=4"),
        (_engine(gas=1, micro=5), None),
        (_engine(gas=4, micro=3, managed=False), None),  # every engine.step() a boundary
        (_engine(gas=4, managed=False, unmanaged_backwards=2), "2 backward pass(es) since"),
        (_engine(gas=4, micro=3, override=True), None),  # the optimizer-step count tells
        (_engine(gas=4, micro=3, zenflow=True), None),
    ],
)
def test_gradients_held_between_optimizer_steps(engine: Any, held: str | None) -> None:
    said = ds.accumulating(engine)
    assert said == held if held is None else held in str(said)


def test_each_lz_step_needs_an_optimizer_step_of_its_own() -> None:
    engine = _engine(gas=2, global_steps=7)  # e.g. a checkpoint's count after the resume
    state = ds.DeepSpeedState(engine)
    with pytest.raises(PermanentError, match=r"engine\.global_steps is still 7"):
        state.at_step()
    engine.global_steps = 8
    state.at_step()
    with pytest.raises(PermanentError, match=r"no optimizer step since the last lz\.step"):
        state.at_step()
    engine.micro_steps, engine.global_steps = 3, 9
    with pytest.raises(PermanentError, match=r"micro-step \(1 of gradient_accumulation_steps"):
        state.at_step()
