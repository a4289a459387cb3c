"""The frozen base's fingerprint (base_fingerprint.py): what it covers, what a difference
says, what a malformed one is; and the PEFT view's state dict (adapters/hf_peft.py)."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

from lazarus_trainer.adapters.hf_peft import TrainableView, full_state
from lazarus_trainer.base_fingerprint import (
    KEY,
    Entry,
    FrozenBase,
    difference,
    from_plain,
    note_frozen,
)
from lazarus_trainer.state import Registry
from lazarus_trainer.termination import PermanentError

pytestmark = pytest.mark.unit


def _model() -> nn.Module:
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))
    m.get_submodule("0").requires_grad_(False)
    return m


def _p(m: nn.Module, name: str) -> torch.Tensor:
    return dict(m.named_parameters())[name]


def _base(m: nn.Module) -> FrozenBase:
    base = FrozenBase()
    base.add("model", m)
    return base


def test_covers_frozen_parameters_and_buffers_not_what_trains() -> None:
    fp = _base(_model()).models["model"]
    assert sorted(fp) == [
        "0.bias",
        "0.weight",
        "1.num_batches_tracked",
        "1.running_mean",
        "1.running_var",
    ]
    assert fp["0.weight"].shape == (4, 4) and fp["0.weight"].dtype == "float32"


def test_a_model_with_nothing_frozen_is_not_fingerprinted() -> None:
    reg = Registry(models={"model": nn.Linear(2, 2)})
    note_frozen(reg)
    assert KEY not in reg.extras
    reg.models["other"] = _model()
    note_frozen(reg)
    base = reg.extras[KEY]
    assert isinstance(base, FrozenBase) and list(base.models) == ["other"]


E = Entry((2, 2), "float32", "a" * 64)
SAVED = {"w": E, "b": Entry((2,), "float32", "b" * 64)}


@pytest.mark.parametrize(
    ("now", "says"),
    [
        (dict(SAVED), None),
        ({"w": E}, "b is frozen in the checkpoint's base but not in this model; 1 of 2"),
        ({**SAVED, "x": E}, "x is frozen in this model but not in the checkpoint's base; 1 of 2"),
        ({**SAVED, "w": Entry((3, 2), "float32", "a" * 64)}, "w has shape [2, 2] there, [3, 2]"),
        ({**SAVED, "w": Entry((2, 2), "bfloat16", "a" * 64)}, "w is float32 there, bfloat16 here"),
        (
            {"w": Entry((2, 2), "float32", "c" * 64), "b": Entry((2,), "float32", "d" * 64)},
            "w holds other values (sha256 aaaaaaaaaaaa there, cccccccccccc here); 2 of 2",
        ),
    ],
)
def test_difference_names_the_first_change(now: dict[str, Entry], says: str | None) -> None:
    why = difference(SAVED, now)
    assert why == says if says is None else why is not None and why.startswith(says), why


@pytest.mark.parametrize(
    "saved",
    [
        None,
        [],
        {"version": 2, "models": {}},
        {"version": 1},
        {"version": 1, "models": {"model": "x"}},
        {"version": 1, "models": {"model": [["w", [2, "2"], "float32", "a"]]}},
        {"version": 1, "models": {"model": [["w", [2, 2], "float32"]]}},
    ],
)
def test_a_malformed_fingerprint_is_a_reason_not_a_refusal(saved: Any) -> None:
    assert _base(_model()).check_state(saved)


def test_another_base_is_refused_the_same_one_passes() -> None:
    m = _model()
    saved = _base(m).state_dict()
    assert _base(_model()).check_state(saved) is None
    with torch.no_grad():
        _p(m, "0.weight")[1, 2] += 1e-6
    with pytest.raises(PermanentError, match=r"model 'model' holds: 0\.weight holds other values"):
        _base(m).check_state(saved)
    assert from_plain(saved["models"]["model"]) == _base(_model()).models["model"]


def test_peft_view_leaves_out_the_fingerprinted_frozen_weights_unless_written() -> None:
    """What trains and the buffers are saved; a frozen weight written in place since setup
    is saved again; loading a view's state needs only the vouched-for weights from the model."""
    m = _model()
    view = TrainableView(m, _base(m))
    assert sorted(view.state_dict()) == sorted(set(m.state_dict()) - {"0.weight", "0.bias"})
    with torch.no_grad():
        _p(m, "0.bias").add_(1.0)
    assert "0.bias" in view.state_dict() and "0.weight" not in view.state_dict()
    other = _model()
    whole = full_state(other, view.state_dict(), {"0.weight", "0.bias"})
    assert torch.equal(whole["0.bias"], _p(m, "0.bias"))
    assert torch.equal(whole["2.weight"], _p(m, "2.weight"))
    with pytest.raises(PermanentError, match=r"no weights for 0\.weight"):
        full_state(other, view.state_dict(), set())
