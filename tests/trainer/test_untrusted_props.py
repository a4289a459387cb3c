"""The trainer's readers of checkpoint bytes under hostile input (issue 22): the raw tensor
file (header and state tree), the per-rank RNG state, DCP metadata and items, the
manifest's lazarusTrainer extra and the HF adapter's trainer state. Each input is valid
(and then restores without error) or an InvalidCheckpoint with a one-line reason, which
the resumer quarantines and falls back from; never another exception."""

from __future__ import annotations

import dataclasses
import json
import pickle
import shutil
import struct
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch.distributed.checkpoint.filesystem import FileSystemWriter
from torch.distributed.checkpoint.state_dict_saver import save as dcp_save
from transformers import TrainerState

from lazarus_contract.bounded_json import MalformedJSON, loads_bounded
from lazarus_store import JobIdentity, Manifest, ObjectEntry
from lazarus_trainer import sharded
from lazarus_trainer.adapters.hf_checks import check_trainer_state
from lazarus_trainer.meta import TrainerExtra
from lazarus_trainer.rng import capture_rng
from lazarus_trainer.state import (
    READ_FORMATS,
    Progress,
    Registry,
    capture_common,
    capture_rank,
    check_optimizers,
    deserialize,
    restore_common,
    restore_rank,
)
from lazarus_trainer.storage import InvalidCheckpoint
from lazarus_trainer.tensorfile import TREE_KEY, pack
from lazarus_trainer.termination import PermanentError

from ..hostile import mutated

pytestmark = [
    pytest.mark.unit,
    pytest.mark.timeout(600),
    pytest.mark.filterwarnings("ignore:torch.distributed is disabled:UserWarning"),
]
SETTINGS = settings(
    max_examples=200,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
COMMON, RANK = "trainer/common.safetensors", "trainer/rank-00000.safetensors"


def registry() -> Registry:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.LayerNorm(2))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.randn(2, 3)).sum().backward()
    opt.step()
    return Registry(models={"model": model}, optimizers={"optimizer": opt})


def file_bytes(state: Any) -> bytes:
    return bytes(pack(state).view())


def split(data: bytes) -> tuple[dict[str, Any], bytes]:
    (n,) = struct.unpack("<Q", data[:8])
    return json.loads(data[8 : 8 + n]), data[8 + n :]


def joined(header: bytes, body: bytes) -> bytes:
    return struct.pack("<Q", len(header)) + header + body


def one_line(exc: BaseException) -> None:
    assert "\n" not in str(exc) and len(str(exc)) < 1_000, str(exc)[:300]


COMMON_FILE = file_bytes(capture_common(registry(), Progress(step=7), {"note": "x"}))
COMMON_HEAD, COMMON_BODY = split(COMMON_FILE)
COMMON_TREE = COMMON_HEAD["__metadata__"][TREE_KEY].encode()
HEADER_ONLY = json.dumps({k: v for k, v in COMMON_HEAD.items() if k != "__metadata__"}).encode()
RANK_FILE = file_bytes(capture_rank())
RANK_HEAD, RANK_BODY = split(RANK_FILE)
RANK_TREE = RANK_HEAD["__metadata__"][TREE_KEY].encode()


def with_tree(head: dict[str, Any], tree: bytes, body: bytes) -> bytes:
    meta = {TREE_KEY: tree.decode("utf-8", "replace")}
    return joined(json.dumps({**head, "__metadata__": meta}).encode(), body)


def load_common(data: bytes) -> None:
    """Valid: it restores into a fresh registry (or is another model: permanent)."""
    try:
        state = deserialize(data, COMMON, 3)
    except InvalidCheckpoint as exc:
        one_line(exc)
        return
    reg = registry()
    try:
        check_optimizers(reg, state, COMMON)
        restore_common(reg, state)
    except (InvalidCheckpoint, PermanentError) as exc:
        one_line(exc)


@SETTINGS
@given(st.one_of(mutated(HEADER_ONLY), mutated(COMMON_TREE).map(lambda t: b"tree" + t)))
def test_a_raw_tensor_file_is_valid_or_invalid(change: bytes) -> None:
    if change.startswith(b"tree"):  # the state tree changed
        load_common(with_tree(COMMON_HEAD, change[4:], COMMON_BODY))
        return
    meta = json.dumps({"__metadata__": COMMON_HEAD["__metadata__"]})[1:-1]
    header = (
        change.rstrip()[:-1] + b", " + meta.encode() + b"}" if change.endswith(b"}") else change
    )
    load_common(joined(header, COMMON_BODY))


@SETTINGS
@given(st.integers(0, len(COMMON_FILE) - 1), st.integers(0, 7), st.booleans())
def test_a_raw_tensor_file_cut_or_flipped_is_valid_or_invalid(at: int, bit: int, cut: bool) -> None:
    data = bytearray(COMMON_FILE[:at] if cut else COMMON_FILE)
    if not cut:
        data[at] ^= 1 << bit
    load_common(bytes(data))


@SETTINGS
@given(mutated(RANK_TREE))
def test_rank_state_is_valid_and_restores_or_is_invalid(tree: bytes) -> None:
    before = capture_rng()
    try:
        state = deserialize(with_tree(RANK_HEAD, tree, RANK_BODY), RANK, 3)
    except InvalidCheckpoint as exc:
        one_line(exc)
        return
    finally:
        assert torch.equal(capture_rng()["torch"], before["torch"]), "the trial restore leaked"
    restore_rank(state)


@pytest.mark.parametrize(
    "shape",
    [[0, 2**62, 2**62], [2**63], [0, 2**63], [1] * 65, [-1], [True], [1.0], "ab", None, [[1]]],
)
def test_absurd_tensor_dimensions_are_invalid(shape: Any) -> None:
    name = next(k for k in COMMON_HEAD if k != "__metadata__")
    spec = {**COMMON_HEAD[name], "shape": shape, "data_offsets": [0, 0]}  # no bytes, so
    head = {**COMMON_HEAD, name: spec}  # only the shape's arithmetic can refuse it
    with pytest.raises(InvalidCheckpoint, match=r"is malformed|does not match its bytes"):
        deserialize(joined(json.dumps(head).encode(), COMMON_BODY), COMMON, 3)


EXTRA = json.dumps({"format": 3, "worldSize": 2, "modelOptimizer": "dcp", "timings": {}}).encode()


@SETTINGS
@given(mutated(EXTRA))
def test_the_trainer_extra_is_valid_invalid_or_a_newer_format(raw: bytes) -> None:
    try:  # as the manifest's parser reads it (tests/store/test_untrusted_props.py)
        extra = loads_bounded(raw, max_bytes=1 << 20, max_depth=30, allow_nan=True)
    except MalformedJSON:
        return
    m = Manifest(
        "step-000000000001-a0001", 1, 1, "periodic", (ObjectEntry("a", 1, "AAAAAA=="),), "x"
    )
    manifest = dataclasses.replace(m, job=JobIdentity(), extra={"lazarusTrainer": extra})
    try:
        got = TrainerExtra.parse(manifest, "c", READ_FORMATS)
    except InvalidCheckpoint as exc:
        one_line(exc)
        return
    except PermanentError:  # a well-formed format or layout this trainer does not read
        assert isinstance(extra, dict) and type(extra.get("format")) is int
        assert isinstance(extra.get("modelOptimizer", "replicated"), str)
        return
    assert got.format in READ_FORMATS and type(got.format) is int
    assert got.world_size is None or (type(got.world_size) is int and got.world_size >= 1)


HF_STATE = json.dumps(
    {
        **dataclasses.asdict(TrainerState(global_step=4, log_history=[{"loss": 1.0, "step": 4}])),
        "stateful_callbacks": {"TrainerControl": {"args": {}, "attributes": {}}},
    }
).encode()


@SETTINGS
@given(mutated(HF_STATE))
def test_hf_trainer_state_is_one_hf_reads_or_invalid(raw: bytes) -> None:
    try:
        doc = check_trainer_state(raw.decode("utf-8", "replace"), COMMON)
    except InvalidCheckpoint as exc:
        one_line(exc)
        return
    state = TrainerState(**doc)  # what HF's load_from_json does with it
    assert isinstance(state.global_step, int) and isinstance(state.log_history, list)


@pytest.fixture(scope="module")
def dcp_files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("dcp")
    dcp_save(sharded.capture(registry()), storage_writer=FileSystemWriter(d))
    return d


def load_dcp(d: Path) -> None:
    def fetch(path: str, local: Path) -> None:
        shutil.copyfile(d / path.removeprefix(sharded.DCP_PREFIX), local)

    reg = registry()
    reader, target = sharded.StoreReader(fetch), sharded.capture(reg)
    try:  # as the resumer does: metadata, the model's compatibility, then the load
        sharded.check_compatible(reg, sharded.names(reg), reader.read_metadata())
        sharded.load(target, reader, None)
    except (InvalidCheckpoint, PermanentError) as exc:  # permanent: another model's shapes
        one_line(exc)
    finally:
        reader.cleanup()


ABSURD_INTS = st.sampled_from([-1, 0, 1, 3, 2**31, 2**63, 2**64, True])


@settings(SETTINGS, max_examples=60)
@given(st.data())
def test_dcp_metadata_and_items_are_valid_or_invalid(
    dcp_files: Path, tmp_path: Path, data: st.DataObject
) -> None:
    d = tmp_path / "dcp"
    shutil.rmtree(d, ignore_errors=True)
    shutil.copytree(dcp_files, d)
    meta = pickle.loads((d / ".metadata").read_bytes())  # our own file, to craft it
    infos = list(meta.storage_data.values())
    tensors = [m for m in meta.state_dict_metadata.values() if hasattr(m, "chunks")]
    for _ in range(data.draw(st.integers(1, 4))):
        what = data.draw(st.sampled_from(["offset", "length", "size", "chunk", "path", "file"]))
        info, t = data.draw(st.sampled_from(infos)), data.draw(st.sampled_from(tensors))
        if what in ("offset", "length"):
            setattr(info, what, data.draw(ABSURD_INTS))
        elif what == "size":
            t.size = torch.Size([data.draw(ABSURD_INTS)] * len(t.size))
        elif what == "chunk":
            t.chunks[0].sizes = torch.Size([data.draw(ABSURD_INTS)] * len(t.size))
        elif what == "path":
            info.relative_path = data.draw(st.sampled_from(["", "../x", "nope.distcp", 7]))
        else:  # the shard's bytes
            shard = next(p for p in d.iterdir() if p.suffix == ".distcp")
            raw = bytearray(shard.read_bytes())
            raw[data.draw(st.integers(0, len(raw) - 1))] ^= 0xFF
            shard.write_bytes(bytes(raw))
    (d / ".metadata").write_bytes(pickle.dumps(meta))
    load_dcp(d)


def test_a_dcp_item_of_another_kind_is_invalid(tmp_path: Path) -> None:
    """A plain value where the optimizer has a number: refused at load, not at apply."""
    saved = sharded.capture(registry())
    saved["optimizers"]["optimizer"]["param_groups"][0]["lr"] = ["not", "a", "number"]
    dcp_save(saved, storage_writer=FileSystemWriter(tmp_path))

    def fetch(path: str, local: Path) -> None:
        shutil.copyfile(tmp_path / path.removeprefix(sharded.DCP_PREFIX), local)

    reader = sharded.StoreReader(fetch)
    try:
        with pytest.raises(InvalidCheckpoint, match=r"lr: a list where this run has a float"):
            sharded.load(sharded.capture(registry()), reader, None)
    finally:
        reader.cleanup()
