"""A frozen base is fingerprinted, not saved again: a LoRA job under HF Trainer (as HF's and
PEFT's docs write one) whose checkpoints hold the adapter and the fingerprint resumes bitwise
after SIGTERM and SIGKILL, and a plain loop with a partly frozen model does too; resuming onto
a base with one frozen weight nudged is refused (78) naming the weight, in both."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from lazarus_trainer.base_fingerprint import KEY
from lazarus_trainer.state import common_object, deserialize

from .harness import attempt_env, losses, same_params, store_for, termination, trainer_env
from .test_hf_user_e2e import _interrupted, _reference, _rows

pytestmark = pytest.mark.e2e

HERE = Path(__file__).parent
PLAIN = HERE / "plain_script.py"
LORA = {"HF_USER_PEFT": "lora", "LAZARUS_SAVE_EVERY_STEPS": "4"}
BASE = ["base_model.model.emb.base_layer.weight", "base_model.model.out.base_layer.weight"]


def _newest_common(s3: Any, root: str) -> dict[str, Any]:
    store = store_for(s3, root)
    name = max(c.name for c in store.list_checkpoints() if c.committed)
    path = common_object()
    return deserialize(store.read_bytes(name, path), path, 3)


def test_lora_checkpoints_hold_the_adapter_and_resume_bitwise_after_sigkill_and_sigterm(
    s3: Any, bucket: str, tmp_path: Path
) -> None:
    """SIGKILL after step 7 (the step-5 checkpoint, an eval-best one, committed: steps 6
    and 7 are trained again), SIGTERM after step 9: the same losses as the uninterrupted run
    at every step, replayed ones included, and the same final weights; every checkpoint's
    model is the adapter alone, and it records the frozen base's fingerprint."""
    ref = _reference(s3, bucket, tmp_path, 12, None, **LORA)
    codes = _interrupted(s3, bucket, tmp_path, ["K7", "T9", ""], 12, None, **LORA)
    assert codes == [-signal.SIGKILL, 75, 0]
    got = _rows(tmp_path / "int.jsonl", "loss")
    assert sorted(set(got)) == _rows(ref, "loss"), got
    assert [s for s, _ in got].count(6) == 2  # premise: step 6 was trained again
    assert same_params(tmp_path / "a.pt", tmp_path / "b.pt")
    common = _newest_common(s3, f"s3://{bucket}/int")
    saved = sorted(common["models"]["model"])
    assert not set(BASE) & set(saved), saved
    assert any("lora_A" in k for k in saved), saved
    rows = common["extras"][KEY]["models"]["model"]
    assert sorted(r[0] for r in rows if r[0] in BASE) == BASE, rows


def test_lora_resumed_onto_another_base_is_refused(s3: Any, bucket: str, tmp_path: Path) -> None:
    """One weight of the frozen base nudged by 1e-3 before the second attempt: refused (78)
    before a step, naming the weight; the checkpoint is not quarantined (the base is wrong,
    not the checkpoint)."""
    assert _interrupted(s3, bucket, tmp_path, ["T4"], 8, None, **LORA) == [75]
    root = f"s3://{bucket}/int"
    env = attempt_env(s3, root, tmp_path, 2, HF_USER_PERTURB="1", **LORA)
    log = tmp_path / "int.jsonl"
    before = log.read_text()
    args = [str(log), "8", str(tmp_path / "b.pt"), str(tmp_path / "hf-out")]
    p = subprocess.run(
        [sys.executable, str(HERE / "hf_user_script.py"), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert p.returncode == 78, p.stderr[-3000:]
    assert "Traceback" not in p.stderr, p.stderr[-3000:]
    assert log.read_text() == before  # not one step trained
    message = termination(tmp_path)["message"]
    assert "another frozen base" in message, message
    assert "base_model.model.out.base_layer.weight holds other values" in message, message
    assert not store_for(s3, root).is_quarantined(
        max(c.name for c in store_for(s3, root).list_checkpoints() if c.committed)
    )


def _plain(env: dict[str, str], log: Path, steps: int, stop: int, out: Path) -> int:
    p = subprocess.run(
        [sys.executable, str(PLAIN), str(log), str(steps), str(stop), str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert p.returncode in (0, 75, 78), p.stderr[-3000:]
    assert "Traceback" not in p.stderr, p.stderr[-3000:]
    return p.returncode


def test_plain_loop_partly_frozen_resumes_bitwise_and_refuses_another_base(
    s3: Any, bucket: str, tmp_path: Path
) -> None:
    """The first layer frozen: SIGTERMs at 3 and 5 resume to the same losses and weights,
    the checkpoints record the frozen layer's fingerprint; then a resume whose frozen layer
    has one weight nudged is refused (78) naming it."""
    ref, log = tmp_path / "ref.jsonl", tmp_path / "int.jsonl"
    env = trainer_env(s3, f"s3://{bucket}/ref", tmp_path, PLAIN_TEST_FREEZE="1")
    assert _plain(env, ref, 7, 0, tmp_path / "a.pt") == 0
    root = f"s3://{bucket}/int"
    for attempt, stop in enumerate([3, 5, 0], start=1):
        env = attempt_env(s3, root, tmp_path, attempt, PLAIN_TEST_FREEZE="1")
        assert _plain(env, log, 7, stop, tmp_path / "b.pt") == (75 if stop else 0)
    assert losses(log) == losses(ref)
    assert same_params(tmp_path / "a.pt", tmp_path / "b.pt")
    rows = _newest_common(s3, root)["extras"][KEY]["models"]["model"]
    assert sorted(r[0] for r in rows) == ["0.bias", "0.weight"], rows
    env = attempt_env(s3, root, tmp_path, 4, PLAIN_TEST_FREEZE="1", PLAIN_TEST_PERTURB="1")
    assert _plain(env, log, 9, 0, tmp_path / "c.pt") == 78
    message = termination(tmp_path)["message"]
    assert "another frozen base than model 'model'" in message, message
    assert "0.weight holds other values" in message, message
