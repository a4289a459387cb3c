"""The raw tensor layout (trainer format 3): exact round trips, safetensors' own reader, reused
buffers, views without copies on load, and every malformed file refused as invalid."""

from __future__ import annotations

import json
import random
import struct
from collections import OrderedDict
from typing import Any

import pytest
import safetensors.torch
import torch

from lazarus_trainer.rng import capture_rng
from lazarus_trainer.state import RAW_FORMAT, deserialize, serialize
from lazarus_trainer.storage import InvalidCheckpoint
from lazarus_trainer.tensorfile import TREE_KEY, pack
from lazarus_trainer.tensorread import unpack
from lazarus_trainer.termination import PermanentError

pytestmark = pytest.mark.unit


def trained_state() -> dict[str, Any]:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 4), torch.nn.LayerNorm(4))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.99))
    model(torch.randn(3, 6)).sum().backward()
    opt.step()
    return {
        "format": RAW_FORMAT,
        "models": {"m": model.state_dict()},
        "optimizers": {"o": opt.state_dict()},
        "rng": capture_rng(),
        "odd": [
            1,
            -2.5,
            float("inf"),
            float("-inf"),
            None,
            True,
            b"\x00raw",
            1 + 2j,
            torch.bfloat16,
            torch.device("cpu"),
            {3, 4},
            (1, "x"),
            OrderedDict(b=1, a=2),
            {7: "int key", (1, 2): "tuple key"},
        ],
        "views": {
            "transposed": torch.arange(12.0).reshape(3, 4).t(),  # not contiguous
            "bf16": torch.randn(5).to(torch.bfloat16),
            "bool": torch.tensor([True, False, True]),
            "scalar": torch.tensor(3, dtype=torch.int16),
            "empty": torch.empty(0, 4),
            "u8": torch.arange(7, dtype=torch.uint8),
        },
    }


def same(a: Any, b: Any, path: str = "state") -> None:
    assert type(a) is type(b), f"{path}: {type(a)} != {type(b)}"
    if isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and a.shape == b.shape, path
        assert torch.equal(a, b), path
    elif isinstance(a, dict):
        assert list(a) == list(b), path
        for k in a:
            same(a[k], b[k], f"{path}[{k!r}]")
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            same(x, y, f"{path}[{i}]")
    else:
        assert a == b, f"{path}: {a!r} != {b!r}"


def test_round_trip_is_exact_in_values_and_types() -> None:
    state = trained_state()
    back = unpack(bytearray(pack(state).view()), "x")
    same(state, back)
    assert back["odd"][2] == float("inf") and back["rng"]["python"] == random.getstate()


def test_the_file_is_safetensors_layout() -> None:
    state = trained_state()
    data = bytes(pack(state).view())
    theirs = safetensors.torch.load(data)  # the reference reader accepts it
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8 : 8 + n])
    tree = json.loads(header["__metadata__"][TREE_KEY])
    assert tree["t"] == "dict" and len(theirs) == len(header) - 1
    w = state["models"]["m"]["0.weight"]
    [name] = [k for k in theirs if k.endswith(".models.m.0.weight")]
    assert torch.equal(theirs[name], w)
    assert (8 + n) % 4096 == 0, "the data section starts page-aligned"


def test_loaded_tensors_are_views_of_the_downloaded_buffer() -> None:
    state = trained_state()
    buf = bytearray(pack(state).view())
    back = unpack(buf, "x")
    start = torch.frombuffer(buf, dtype=torch.uint8).data_ptr()
    t = back["optimizers"]["o"]["state"][0]["exp_avg"]
    assert start <= t.data_ptr() < start + len(buf), "the loader copied the tensor"


def test_the_buffer_is_reused_while_the_tensors_match() -> None:
    state = trained_state()
    first = pack(state)
    state["models"]["m"]["0.weight"].add_(1.0)
    state["odd"][0] = 99  # the tree changes between saves; the header is rewritten
    again = pack(state, reuse=first)
    assert again.buffer.data_ptr() == first.buffer.data_ptr()
    same(state, unpack(bytearray(again.view()), "x"))
    state["views"]["u8"] = torch.arange(9, dtype=torch.uint8)  # a shape changed
    moved = pack(state, reuse=again)
    assert moved.buffer.data_ptr() != again.buffer.data_ptr()
    same(state, unpack(bytearray(moved.view()), "x"))
    state["odd"].append("y" * 100_000)  # the tree outgrew the header's slack
    grown = pack(state, reuse=moved)
    assert grown.header_capacity > moved.header_capacity
    same(state, unpack(bytearray(grown.view()), "x"))


def test_deserialize_format_3_checks_the_shape_like_the_pickles() -> None:
    data = bytearray(pack({"format": RAW_FORMAT, "rng": None}).view())
    with pytest.raises(InvalidCheckpoint, match="malformed trainer state"):
        deserialize(data, "trainer/rank-00000.safetensors", RAW_FORMAT)
    ok = bytearray(pack({"format": RAW_FORMAT, "rng": capture_rng()}).view())
    assert deserialize(ok, "trainer/rank-00000.safetensors", RAW_FORMAT)["format"] == RAW_FORMAT


def _file(header: dict[str, Any], data: bytes = b"") -> bytearray:
    raw = json.dumps(header).encode()
    return bytearray(struct.pack("<Q", len(raw)) + raw + data)


def _tree(tree: Any) -> dict[str, Any]:
    return {"__metadata__": {TREE_KEY: json.dumps(tree)}}


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (bytearray(b"\x01\x02"), "not a raw tensor file"),
        (bytearray(serialize({"format": 2})), "header length"),  # a pickle in its place
        (bytearray(struct.pack("<Q", 5) + b"{oops"), "not a Lazarus raw tensor file"),
        (_file({"a": 1}), "not a Lazarus raw tensor file"),  # no tree
        (_file(_tree({"t": "object", "v": "os.system"})), "unknown tag 'object'"),
        (_file(_tree({"t": "dtype", "v": "Tensor"})), "malformed 'dtype'"),
        (_file(_tree({"t": "tensor", "n": "missing"})), "malformed 'tensor'"),
        (_file(_tree({"t": "dict", "k": [[1]], "v": [2]})), "unknown value"),
        (_file(_tree({"t": "set", "v": [{"t": "list", "v": []}]})), "malformed 'set'"),
        (_file(_tree({"t": "float", "v": "1e999"})), "unknown tag 'float'"),
        (_file(_tree({"t": "float", "v": float("nan")})), "not a Lazarus raw tensor file"),
        (
            _file({**_tree(None), "x": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}),
            "does not match its bytes",  # past the end
        ),
        (
            _file(
                {**_tree(None), "x": {"dtype": "F32", "shape": [3], "data_offsets": [0, 16]}},
                bytes(16),
            ),
            "does not match its bytes",  # size disagrees with the shape
        ),
        (
            _file({**_tree(None), "x": {"dtype": "OBJ", "shape": [1], "data_offsets": [0, 8]}}),
            "is malformed",
        ),
        (
            _file({**_tree(None), "x": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}}),
            "is malformed",
        ),
    ],
)
def test_malformed_files_are_invalid_not_crashes(data: bytearray, match: str) -> None:
    with pytest.raises(InvalidCheckpoint, match=match):
        unpack(data, "trainer/common.safetensors")


def test_unstorable_values_are_refused_at_save() -> None:
    with pytest.raises(PermanentError, match="not storable"):
        pack({"x": torch.zeros(2, dtype=torch.complex128)})
    with pytest.raises(PermanentError, match="not storable in the raw layout"):
        pack({"x": object()})


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_device_tensors_go_through_a_pinned_buffer_without_blocking() -> None:
    from lazarus_trainer.snapshot import synchronize

    state = {"w": torch.randn(1000, 100, device="cuda"), "step": torch.tensor(3, device="cuda")}
    packed = pack(state)
    synchronize()
    assert packed.buffer.is_pinned()
    back = unpack(bytearray(packed.view()), "x")
    assert back["w"].device.type == "cpu" and torch.equal(back["w"], state["w"].cpu())
    state["w"].add_(1)  # the next save copies into the same pinned buffer
    again = pack(state, reuse=packed)
    synchronize()
    assert again.buffer.data_ptr() == packed.buffer.data_ptr()
    assert torch.equal(unpack(bytearray(again.view()), "x")["w"], state["w"].cpu())
