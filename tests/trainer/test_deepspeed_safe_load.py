"""DeepSpeed checkpoint files load without running code: its ZeRO classes pass, others don't."""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import pytest
import torch
from deepspeed.runtime.fp16.loss_scaler import LossScaler
from deepspeed.runtime.zero.config import ZeroStageEnum
from deepspeed.utils.tensor_fragment import fragment_address

import lazarus_trainer.adapters.deepspeed as ds
from lazarus_trainer.storage import InvalidCheckpoint
from lazarus_trainer.termination import PermanentError

pytestmark = pytest.mark.unit


class Payload:
    """A pickle that creates a directory when loaded: proof if anything ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (os.mkdir, (str(self.marker),))


def _zero_like() -> dict[str, Any]:
    """What a ZeRO optimizer file holds besides tensors (DeepSpeed 0.19)."""
    return {
        "optimizer_state_dict": {
            "loss_scaler": LossScaler(1.0),
            "zero_stage": ZeroStageEnum(2),
            "param_slice_mappings": [{"0.weight": fragment_address(numel=4, start=0)}],
            "single_partition_of_fp32_groups": [torch.arange(4.0)],
        },
        "ds_config": {"zero_optimization": {"stage": 2}},
        "ds_version": "0.19.8",
    }


def _bytes(obj: Any) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def test_zero_files_load_with_the_allow_list(tmp_path: Path) -> None:
    path = tmp_path / "zero_pp_rank_0_mp_rank_00_optim_states.pt"
    path.write_bytes(_bytes(_zero_like()))
    got = ds.load_file(path, "deepspeed/" + path.name)
    sd = got["optimizer_state_dict"]
    assert isinstance(sd["loss_scaler"], LossScaler) and sd["loss_scaler"].cur_scale == 1.0
    assert sd["zero_stage"] is ZeroStageEnum.gradients
    assert sd["param_slice_mappings"][0]["0.weight"] == fragment_address(numel=4, start=0)
    assert torch.equal(sd["single_partition_of_fp32_groups"][0], torch.arange(4.0))


def test_a_file_that_would_run_code_is_invalid_not_loaded(tmp_path: Path) -> None:
    path = tmp_path / "mp_rank_00_model_states.pt"
    marker = tmp_path / "ran"
    path.write_bytes(_bytes({"module": {}, "lr_scheduler": Payload(marker)}))
    with pytest.raises(InvalidCheckpoint, match=r"deepspeed/mp_rank_00_model_states\.pt: "):
        ds.load_file(path, "deepspeed/" + path.name)
    assert not marker.exists()


def test_first_save_refuses_state_the_loader_would_refuse(tmp_path: Path) -> None:
    state = ds.DeepSpeedState(engine=None)
    state._check_loadable({"deepspeed/a.pt": _bytes(_zero_like())})  # loads: accepted
    state._checked = False
    with pytest.raises(PermanentError, match=r"deepspeed/b\.pt could not be loaded back"):
        state._check_loadable({"deepspeed/b.pt": _bytes({"x": Payload(tmp_path / "ran")})})


class _Engine:
    """What `_check_shape` reads of an engine: its stage, module and ZeRO partitions."""

    def __init__(self, stage: int) -> None:
        self.module = torch.nn.Linear(2, 2)
        self.optimizer = type("Opt", (), {"single_partition_of_fp32_groups": [torch.zeros(6)]})()
        self._stage = stage
        self.global_steps = 0

    def zero_optimization_stage(self) -> int:
        return self._stage


MODEL = "deepspeed/mp_rank_00_model_states.pt"
OPTIM = "deepspeed/zero_pp_rank_0_mp_rank_00_optim_states.pt"


def _model(**over: Any) -> dict[str, Any]:
    module = {"weight": torch.zeros(2, 2), "bias": torch.zeros(2)}
    return {"module": module, "dp_world_size": 1, "mp_world_size": 1, "global_steps": 3, **over}


@pytest.mark.parametrize(
    ("path", "obj", "error", "message"),
    [
        (MODEL, _model(), None, ""),
        (
            OPTIM,
            {"optimizer_state_dict": {"single_partition_of_fp32_groups": [torch.ones(6)]}},
            None,
            "",
        ),
        (MODEL, [1, 2], InvalidCheckpoint, "not a DeepSpeed state dict"),
        (MODEL, _model(module=None), InvalidCheckpoint, "malformed DeepSpeed model states"),
        (MODEL, _model(global_steps="3"), InvalidCheckpoint, "malformed DeepSpeed model states"),
        (MODEL, _model(module={"weight": 1.0}), InvalidCheckpoint, "hold a non-tensor"),
        (MODEL, _model(module={"weight": torch.zeros(3, 2)}), PermanentError, "this model"),
        (OPTIM, {"optimizer_state_dict": [1]}, InvalidCheckpoint, "malformed DeepSpeed optimizer"),
        (
            OPTIM,
            {"optimizer_state_dict": {"single_partition_of_fp32_groups": [torch.ones(7)]}},
            InvalidCheckpoint,
            "ZeRO partitions of",
        ),
        (
            OPTIM,
            {"optimizer_state_dict": {"single_partition_of_fp32_groups": "x"}},
            InvalidCheckpoint,
            "ZeRO partitions of",
        ),
    ],
)
def test_deepspeed_files_of_the_wrong_shape_are_refused_before_deepspeed_loads_them(
    path: str, obj: Any, error: type[Exception] | None, message: str
) -> None:
    """Issue 22: DeepSpeed's load_checkpoint failed halfway, past the fall-back."""
    state = ds.DeepSpeedState(engine=_Engine(stage=2))
    if error is None:
        state._check_shape(obj, path)
    else:
        with pytest.raises(error, match=message):
            state._check_shape(obj, path)
