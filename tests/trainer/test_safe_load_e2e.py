"""A crafted payload in a validly committed checkpoint runs nothing on resume; format 1 loads.

Real trainer subprocesses against the real S3 server. The attacker writes through the store
API, so sizes, CRC32C and manifest are all right: only the loader stands in the way.
"""

from __future__ import annotations

import io
import json
import pickle
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from lazarus_store import CheckpointStore
from lazarus_trainer.rng import numpy_state
from lazarus_trainer.state import (
    FORMAT_VERSION,
    common_object,
    deserialize,
    rank_object,
    serialize,
)
from lazarus_trainer.tensorfile import pack

from .harness import losses, run, store_for, termination, trainer_env
from .test_hf_callback_e2e import _curve as hf_curve
from .test_hf_callback_e2e import _run as hf_run
from .test_safe_load import Payload

pytestmark = pytest.mark.e2e


def recommit(
    src: CheckpointStore,
    name: str,
    dst: CheckpointStore,
    step: int,
    replace: dict[str, bytes],
    fmt: int | None = None,
    drop: tuple[str, ...] = (),
) -> str:
    """Copy checkpoint `name` into `dst` as `step`, some objects replaced (or added, or
    dropped): a valid commit."""
    m = src.read_manifest(name)
    w = dst.begin(step=step, attempt=m.attempt)
    for o in m.objects:
        if o.path not in drop:
            w.put_bytes(o.path, replace.get(o.path) or src.read_bytes(name, o.path))
    for path in replace.keys() - {o.path for o in m.objects}:
        w.put_bytes(path, replace[path])
    extra = dict(m.extra)
    if fmt is not None:
        extra["lazarusTrainer"] = {**extra["lazarusTrainer"], "format": fmt}
    return w.commit(
        reason=m.reason,
        epoch=m.epoch,
        metrics=m.metrics,
        world_size=m.world_size,
        parent=name,
        job=m.job,
        samples_seen=m.samples_seen,
        tokens_seen=m.tokens_seen,
        torch_version=m.torch_version,
        extra=extra,
    ).name


def in_format(
    store: CheckpointStore, name: str, fmt: int
) -> tuple[dict[str, bytes], tuple[str, ...]]:
    """The trainer objects of format-3 checkpoint `name` rewritten as format `fmt`'s pickles
    (`.pt`), and the format-3 objects they replace: a checkpoint as older trainers wrote it."""
    out: dict[str, bytes] = {}
    for new, old in ((common_object(), common_object(fmt)), (rank_object(0), rank_object(0, fmt))):
        state = deserialize(store.read_buffer(name, new), new, FORMAT_VERSION)
        if fmt == 1 and "rng" in state:  # format 1 pickled np.random.get_state()'s tuple
            state["rng"]["numpy"] = numpy_state(state["rng"]["numpy"])
        out[old] = serialize({**state, "format": fmt})
    return out, (common_object(), rank_object(0))


@pytest.mark.parametrize(
    ("fmt", "target", "key", "refusal"),
    [
        (2, "trainer/common.pt", "progress", "refused to unpickle io.open"),
        (2, "trainer/rank-00000.pt", "rng", "refused to unpickle io.open"),
        # The raw layout has nothing to unpickle: a pickle in its place is not that layout.
        (3, "trainer/common.safetensors", "progress", "header length"),
        (3, "trainer/rank-00000.safetensors", "rng", "header length"),
    ],
)
def test_crafted_payload_runs_nothing_and_the_run_resumes_from_the_previous_checkpoint(
    s3: Any, bucket: str, tmp_path: Path, fmt: int, target: str, key: str, refusal: str
) -> None:
    root = f"s3://{bucket}/job"
    env = trainer_env(s3, root, tmp_path, LAZARUS_ATTEMPT="1")
    p = run(["--steps", "10", "--save-every-steps", "5"], env)
    assert p.returncode == 0, p.stderr[-3000:]
    store = store_for(s3, root)
    good = "step-000000000010-a0001"
    marker = tmp_path / "code-ran"
    objects, drop = in_format(store, good, fmt) if fmt != FORMAT_VERSION else ({}, ())
    state = (
        deserialize(objects[target], target, fmt)
        if objects
        else deserialize(store.read_buffer(good, target), target, fmt)
    )
    objects[target] = serialize({**state, key: Payload(marker)})
    evil = recommit(store, good, store, 15, objects, fmt=fmt, drop=drop)
    assert evil == "step-000000000015-a0001" and store.read_manifest(evil).step == 15

    env = trainer_env(s3, root, tmp_path, LAZARUS_ATTEMPT="2", LAZARUS_RESUME_FROM="auto")
    p = run(["--steps", "20"], env)
    assert not marker.exists(), "the checkpoint's payload ran in the trainer"
    assert p.returncode == 0, p.stderr[-3000:]
    assert f"checkpoint {evil} failed validation ({target}: {refusal}" in p.stderr
    assert f"resumed from {good}" in p.stderr
    assert store.is_quarantined(evil)
    term = termination(tmp_path)
    assert term["outcome"] == "completed" and term["lastCheckpoint"]["step"] == 20


@pytest.mark.parametrize("fmt", [1, 2])
def test_checkpoint_in_a_previous_format_still_resumes_exactly(
    s3: Any, bucket: str, tmp_path: Path, fmt: int
) -> None:
    """Format 2 (torch.save pickles, before the raw layout) loads with weights_only; format 1
    pickled numpy's RNG state tuple and loads through the numpy allow-list."""
    log = tmp_path / "loss.jsonl"
    env = trainer_env(s3, f"s3://{bucket}/new", tmp_path, LAZARUS_ATTEMPT="1")
    p = run(["--steps", "20", "--save-every-steps", "10", "--loss-log", str(log)], env)
    assert p.returncode == 0, p.stderr[-3000:]
    straight = losses(log)
    new, old = store_for(s3, f"s3://{bucket}/new"), store_for(s3, f"s3://{bucket}/old")
    name = "step-000000000010-a0001"
    legacy, drop = in_format(new, name, fmt)
    rank_path = rank_object(0, fmt)
    unsafe = torch.serialization.get_unsafe_globals_in_checkpoint(io.BytesIO(legacy[rank_path]))
    if fmt == 1:
        assert "numpy.ndarray" in unsafe, "not the old pickled layout"
    else:
        assert unsafe == [], "format 2 holds only tensors and plain values"
    assert recommit(new, name, old, 10, legacy, fmt=fmt, drop=drop) == name
    assert {o.path for o in old.read_manifest(name).objects} == set(legacy), "not the old layout"

    log.unlink()
    env = trainer_env(
        s3, f"s3://{bucket}/old", tmp_path, LAZARUS_ATTEMPT="2", LAZARUS_RESUME_FROM="auto"
    )
    p = run(["--steps", "20", "--loss-log", str(log)], env)
    assert p.returncode == 0, p.stderr[-3000:]
    assert f"resumed from {name}" in p.stderr
    assert losses(log) == straight[10:], f"the format-{fmt} resume did not continue exactly"
    assert old.read_manifest("step-000000000020-a0002").extra["lazarusTrainer"]["format"] == 3


def test_crafted_dcp_metadata_runs_nothing_in_a_two_process_resume(
    s3: Any, bucket: str, tmp_path: Path
) -> None:
    """Two gloo processes: DCP's `.metadata` pickle goes through the allow-list on every rank."""
    root = f"s3://{bucket}/job"
    env = trainer_env(s3, root, tmp_path, LAZARUS_ATTEMPT="1")
    p = run(["--steps", "6", "--save-every-steps", "3"], env, nproc=2)
    assert p.returncode == 0, p.stderr[-3000:]
    store = store_for(s3, root)
    good = "step-000000000006-a0001"
    marker = tmp_path / "code-ran"
    meta = pickle.loads(store.read_bytes(good, "dcp/.metadata"))  # our own file, to craft it
    meta.planner_data = Payload(marker)
    evil = recommit(store, good, store, 9, {"dcp/.metadata": pickle.dumps(meta)})

    env = trainer_env(s3, root, tmp_path, LAZARUS_ATTEMPT="2", LAZARUS_RESUME_FROM="auto")
    p = run(["--steps", "12"], env, nproc=2)
    assert not marker.exists(), "the checkpoint's payload ran in the trainer"
    assert p.returncode == 0, p.stderr[-3000:]
    assert f"checkpoint {evil} failed validation (dcp/.metadata: refused to unpickle io.open" in (
        p.stderr
    )
    assert f"resumed from {good}" in p.stderr
    assert store.is_quarantined(evil)
    assert termination(tmp_path)["lastCheckpoint"]["step"] == 12


def test_hf_callback_refuses_a_crafted_payload(s3: Any, bucket: str, tmp_path: Path) -> None:
    """The HF callback's own resume path: refused, quarantined, resumed from the one before."""
    log, root = tmp_path / "loss.jsonl", f"s3://{bucket}/hf"
    env = trainer_env(s3, root, tmp_path, LAZARUS_ATTEMPT="1", LAZARUS_EVAL_METRIC="eval_loss")
    assert hf_run(env, tmp_path, log, 8, "b.pt") == 75
    good = termination(tmp_path)["lastCheckpoint"]["name"]
    store, marker, target = store_for(s3, root), tmp_path / "code-ran", common_object()
    state = deserialize(store.read_buffer(good, target), target, FORMAT_VERSION)
    evil = recommit(
        store, good, store, 9, {target: serialize({**state, "extras": Payload(marker)})}
    )

    env.update(LAZARUS_ATTEMPT="2", LAZARUS_RESUME_FROM="auto")
    assert hf_run(env, tmp_path, log, 0, "b.pt") == 0
    assert not marker.exists(), "the checkpoint's payload ran in the trainer"
    assert store.is_quarantined(evil)
    assert [s for s, _ in hf_curve(log)] == list(range(1, 21))  # resumed at 8, not from 0


def _absurd_dims(data: bytes, target: str) -> bytes:
    """A header whose first tensor claims 2**124 elements in no bytes (issue 22)."""
    (n,) = struct.unpack("<Q", data[:8])
    head = json.loads(data[8 : 8 + n])
    name = next(k for k in head if k != "__metadata__")
    head[name] = {**head[name], "shape": [0, 2**62, 2**62], "data_offsets": [0, 0]}
    header = json.dumps(head).encode()
    return struct.pack("<Q", len(header)) + header + data[8 + n :]


def _bad_rng(data: bytes, target: str) -> bytes:
    state = deserialize(data, target, FORMAT_VERSION)
    state["rng"]["python"] = "not a random.getstate()"
    return bytes(pack(state).view())


@pytest.mark.parametrize(
    ("target", "change", "refusal"),
    [
        ("trainer/common.safetensors", _absurd_dims, "is malformed (shape has more than 2**63"),
        ("trainer/rank-00000.safetensors", _bad_rng, "malformed trainer state"),
    ],
)
def test_a_wrong_shaped_object_is_quarantined_and_the_run_resumes_from_the_previous(
    s3: Any,
    bucket: str,
    tmp_path: Path,
    target: str,
    change: Callable[[bytes, str], bytes],
    refusal: str,
) -> None:
    """Loadable without code, of the wrong shape: invalid, not a crash (issue 22)."""
    root = f"s3://{bucket}/job"
    env = trainer_env(s3, root, tmp_path, LAZARUS_ATTEMPT="1")
    p = run(["--steps", "10", "--save-every-steps", "5"], env)
    assert p.returncode == 0, p.stderr[-3000:]
    store, good = store_for(s3, root), "step-000000000010-a0001"
    hostile = change(bytes(store.read_buffer(good, target)), target)
    evil = recommit(store, good, store, 15, {target: hostile})

    env = trainer_env(s3, root, tmp_path, LAZARUS_ATTEMPT="2", LAZARUS_RESUME_FROM="auto")
    p = run(["--steps", "20"], env)
    assert p.returncode == 0 and "Traceback" not in p.stderr, p.stderr[-3000:]
    assert f"checkpoint {evil} failed validation ({target}: " in p.stderr
    assert refusal in p.stderr
    assert f"resumed from {good}" in p.stderr and store.is_quarantined(evil)
    assert termination(tmp_path)["lastCheckpoint"]["step"] == 20


def test_hf_trainer_state_that_is_not_json_falls_back(s3: Any, bucket: str, tmp_path: Path) -> None:
    """HF reads trainer_state.json itself: not JSON is refused before HF sees it."""
    log, root = tmp_path / "loss.jsonl", f"s3://{bucket}/hf"
    env = trainer_env(s3, root, tmp_path, LAZARUS_ATTEMPT="1", LAZARUS_EVAL_METRIC="eval_loss")
    assert hf_run(env, tmp_path, log, 8, "b.pt") == 75
    good = termination(tmp_path)["lastCheckpoint"]["name"]
    store, target = store_for(s3, root), common_object()
    state = deserialize(store.read_buffer(good, target), target, FORMAT_VERSION)
    state["extras"]["hf_trainer_state"] = {"json": '{"global_step": '}
    evil = recommit(store, good, store, 9, {target: bytes(pack(state).view())})

    env.update(LAZARUS_ATTEMPT="2", LAZARUS_RESUME_FROM="auto")
    assert hf_run(env, tmp_path, log, 0, "b.pt") == 0
    assert store.is_quarantined(evil)
    assert "hf_trainer_state is not usable JSON" in (store.info(evil).quarantine_reason or "")
    assert [s for s, _ in hf_curve(log)] == list(range(1, 21))  # resumed at 8, not from 0
