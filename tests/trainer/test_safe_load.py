"""Loading never runs code: trainer objects, the old format, and DCP metadata and items."""

from __future__ import annotations

import collections
import io
import pickle
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch.distributed.checkpoint.filesystem import FileSystemWriter
from torch.distributed.checkpoint.state_dict_saver import save as dcp_save

from lazarus_trainer import sharded
from lazarus_trainer.rng import capture_rng, restore_rng
from lazarus_trainer.state import Progress, Registry, capture_common, deserialize, serialize
from lazarus_trainer.storage import InvalidCheckpoint
from lazarus_trainer.termination import PermanentError

pytestmark = [
    pytest.mark.unit,
    pytest.mark.filterwarnings("ignore:torch.distributed is disabled:UserWarning"),
]


class Payload:
    """Unpickled without restriction, this creates `marker`: the attack, harmlessly."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[str, str]]:
        return (open, (str(self.marker), "w"))


def crafted(state: dict[str, Any], key: str, marker: Path) -> bytes:
    """A well-formed torch file of `state` with one value replaced by the payload."""
    return serialize({**state, key: Payload(marker)})


def draws() -> tuple[float, float, float]:
    return random.random(), float(np.random.rand()), float(torch.rand(1))


def test_rank_state_is_plain_and_restores_every_rng(tmp_path: Path) -> None:
    state = deserialize(serialize({"format": 2, "rng": capture_rng()}), "rank")
    expected = draws()
    restore_rng(state["rng"])
    assert draws() == expected
    assert torch.serialization.get_unsafe_globals_in_checkpoint(io.BytesIO(serialize(state))) == []


def test_crafted_trainer_object_is_refused_without_running(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    data = crafted({"format": 2, "rng": capture_rng()}, "rng", marker)
    with pytest.raises(InvalidCheckpoint, match=r"rank-00000.pt: refused to unpickle io\.open"):
        deserialize(data, "trainer/rank-00000.pt")
    with pytest.raises(InvalidCheckpoint, match=r"refused to unpickle io\.open"):
        deserialize(data, "trainer/rank-00000.pt", 1)  # the old format's allow-list is numpy only
    assert not marker.exists()
    with pytest.raises(InvalidCheckpoint, match="not a Lazarus trainer state"):
        deserialize(serialize([1, 2]), "trainer/common.pt")


def test_previous_format_rank_state_still_loads() -> None:
    """Format 1 pickled numpy's own state tuple (an ndarray): read with a numpy allow-list."""
    old = {
        "format": 1,
        "rng": {
            "python": random.getstate(),
            "numpy": np.random.get_state(),
            "torch": torch.get_rng_state(),
        },
    }
    data = serialize(old)
    expected = draws()
    with pytest.raises(InvalidCheckpoint, match="refused to unpickle numpy"):
        deserialize(data, "trainer/rank-00000.pt", 2)  # new checkpoints need no allow-list
    restore_rng(deserialize(data, "trainer/rank-00000.pt", 1)["rng"])
    assert draws() == expected
    # numpy scalars and arrays in format 1's metrics and extras load; anything else is named.
    shape: dict[str, dict[str, Any]] = {
        "models": {},
        "optimizers": {},
        "schedulers": {},
        "extras": {},
    }
    common = {
        "format": 1,
        **shape,
        "scaler": None,
        "sampler": None,
        "progress": {"metrics": [np.float64(0.5)]},
        "x": np.ones(2),
    }
    back = deserialize(serialize(common), "trainer/common.pt", 1)
    assert back["progress"]["metrics"] == [0.5] and back["x"].tolist() == [1.0, 1.0]
    with pytest.raises(InvalidCheckpoint, match=r"unpickle collections\.deque.*format 2"):
        deserialize(serialize({**common, "x": collections.deque()}), "trainer/common.pt", 1)


def registry() -> Registry:
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.LayerNorm(4))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.randn(2, 4)).sum().backward()
    opt.step()
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5)
    return Registry(
        models={"model": model},
        optimizers={"optimizer": opt},
        schedulers={"scheduler": sched},
        scaler=torch.amp.GradScaler("cpu"),
    )


def test_common_state_round_trips_and_non_plain_state_is_refused_at_save() -> None:
    reg = registry()
    progress = Progress(step=3, metrics_history=[{"step": 3, "loss": np.float64(0.5)}])
    state = capture_common(reg, progress, {"note": "x", "ids": (1, 2)})
    back = deserialize(serialize(state), "trainer/common.pt")
    assert back["progress"]["metrics_history"] == [{"step": 3, "loss": 0.5}]
    weight = reg.models["model"].state_dict()["0.weight"]
    assert torch.equal(back["models"]["model"]["0.weight"], weight)
    with pytest.raises(PermanentError, match=r"\['user'\]\['a'\] is a numpy.ndarray"):
        capture_common(reg, progress, {"a": np.zeros(3)})


def dcp_dir(tmp_path: Path, state: dict[str, Any]) -> Path:
    d = tmp_path / "dcp"
    d.mkdir()
    dcp_save(state, storage_writer=FileSystemWriter(d, single_file_per_rank=True))
    return d


def reader_of(d: Path) -> sharded.StoreReader:
    def fetch(path: str, local: Path) -> None:
        assert path.startswith(sharded.DCP_PREFIX)
        shutil.copyfile(d / path.removeprefix(sharded.DCP_PREFIX), local)

    return sharded.StoreReader(fetch)


def test_dcp_state_loads_through_the_allow_list(tmp_path: Path) -> None:
    reg = registry()
    saved = sharded.capture(reg)
    d = dcp_dir(tmp_path, saved)
    target = sharded.capture(registry())
    reader = reader_of(d)
    try:
        sharded.load(target, reader, None)
    finally:
        reader.cleanup()
    opt_saved, opt_back = saved["optimizers"]["optimizer"], target["optimizers"]["optimizer"]
    assert opt_back["param_groups"] == opt_saved["param_groups"]  # the non-tensor items
    for k, t in saved["models"]["model"].items():
        assert torch.equal(target["models"]["model"][k], t)


def test_crafted_dcp_metadata_is_refused_without_running(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    d = dcp_dir(tmp_path, {"w": torch.ones(2)})
    meta = pickle.loads((d / ".metadata").read_bytes())  # our own file, to craft it
    meta.planner_data = Payload(marker)
    (d / ".metadata").write_bytes(pickle.dumps(meta))
    reader = reader_of(d)
    try:
        with pytest.raises(InvalidCheckpoint, match=r"\.metadata: refused to unpickle io\.open"):
            reader.read_metadata()
    finally:
        reader.cleanup()
    assert not marker.exists()


def test_crafted_dcp_item_is_refused_without_running(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    d = dcp_dir(tmp_path, {"w": torch.ones(2), "lr": Payload(marker)})
    reader = reader_of(d)
    try:
        with pytest.raises(InvalidCheckpoint, match=r"DCP item lr: refused to unpickle io\.open"):
            sharded.load({"w": torch.zeros(2), "lr": 0.1}, reader, None)
    finally:
        reader.cleanup()
    assert not marker.exists()


def test_dcp_metadata_naming_a_file_outside_dcp_is_refused(tmp_path: Path) -> None:
    d = dcp_dir(tmp_path, {"w": torch.ones(2)})
    meta = pickle.loads((d / ".metadata").read_bytes())
    for info in meta.storage_data.values():
        info.relative_path = "../../escape"
    (d / ".metadata").write_bytes(pickle.dumps(meta))
    reader = reader_of(d)
    try:
        with pytest.raises(InvalidCheckpoint, match="names a file outside dcp/"):
            sharded.load({"w": torch.zeros(2)}, reader, None)
    finally:
        reader.cleanup()


@pytest.mark.parametrize(
    ("what", "state"),
    [
        ("trainer/common.pt", {"format": 2}),
        ("trainer/common.pt", {"format": 2, "schedulers": [], "extras": {}, "progress": {}}),
        ("trainer/rank-00000.pt", {"format": 2, "rng": None}),
    ],
)
def test_a_plain_object_of_the_wrong_shape_is_invalid_not_a_crash(
    what: str, state: dict[str, Any]
) -> None:
    """Loadable without code, yet not what restore indexes: a fallback, not a KeyError."""
    with pytest.raises(InvalidCheckpoint, match="malformed trainer state"):
        deserialize(serialize(state), what)
