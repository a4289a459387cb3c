"""Model and optimizer saved as DCP shards by 2 processes, resumed by 1 and back by 2."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from lazarus_trainer.state import COMMON_OBJECT, FORMAT_VERSION, deserialize

from .harness import losses, run, store_for, termination, trainer_env

pytestmark = pytest.mark.e2e

STEPS = 12


def _equal(a: Any, b: Any, where: str = "") -> None:
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), (where, sorted(a), sorted(b))
        for k in a:
            _equal(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, list | tuple):
        assert isinstance(b, list | tuple) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _equal(x, y, f"{where}[{i}]")
    else:
        assert a == b, (where, a, b)


def test_world_size_change_reshards_model_and_optimizer(
    s3: Any, bucket: str, tmp_path: Path
) -> None:
    root = f"s3://{bucket}/job"
    log = tmp_path / "loss.jsonl"
    store = store_for(s3, root)
    # (processes, SIGTERM after this step, exit code): 2 -> 1 -> 2.
    legs = [(2, 5, 75), (1, 8, 75), (2, 0, 0)]
    for attempt, (nproc, stop, code) in enumerate(legs, start=1):
        env = trainer_env(
            s3,
            root,
            tmp_path,
            LAZARUS_ATTEMPT=str(attempt),
            LAZARUS_RESUME_FROM="auto",
            LAZARUS_TEST_SIGTERM_AT_STEP=str(stop),
            LAZARUS_TEST_SIGTERM_RANK=str(nproc - 1),
        )
        args = ["--steps", str(STEPS), "--loss-log", str(log)]
        p = run([*args, "--dump-state", str(tmp_path / f"a{attempt}")], env, nproc=nproc)
        if nproc == 1:
            assert p.returncode == code, p.stderr[-3000:]
        else:
            assert (f"exitcode  : {code}" in p.stderr) if code else p.returncode == 0, p.stderr[
                -3000:
            ]
        term = termination(tmp_path)
        assert term["outcome"] == ("preempted" if code else "completed"), term
        last = term["lastCheckpoint"]
        assert last["step"] == (stop or STEPS), term
        manifest = store.read_manifest(last["name"])
        fmt = manifest.extra["lazarusTrainer"]["modelOptimizer"]
        paths = {o.path for o in manifest.objects}
        if nproc == 2:
            assert fmt == "dcp", manifest.extra
            assert "dcp/.metadata" in paths, paths
            for rank in range(2):  # every rank wrote its own shard object
                assert any(x.startswith(f"dcp/__{rank}_") for x in paths), paths
            raw = store.read_buffer(last["name"], COMMON_OBJECT)
            common = deserialize(raw, COMMON_OBJECT, FORMAT_VERSION)
            assert common["models"] == {} and common["optimizers"] == {}, "not only in DCP"
        else:
            assert fmt == "replicated" and not any(x.startswith("dcp/") for x in paths), paths
        if attempt > 1:
            saved = torch.load(tmp_path / f"a{attempt - 1}-end.pt")
            loaded = torch.load(tmp_path / f"a{attempt}-resumed.pt")
            assert loaded["step"] == saved["step"] == legs[attempt - 2][1]
            _equal(saved["model"], loaded["model"], "model")
            _equal(saved["optimizer"], loaded["optimizer"], "optimizer")
            prev = legs[attempt - 2][0]
            assert f"world size changed {prev} -> {nproc}" in p.stderr, p.stderr[-3000:]
    assert [s for s, _ in losses(log)] == list(range(1, STEPS + 1)), "a step was lost or redone"
