"""HF Trainer + LazarusCallback: SIGTERM, resume, same loss curve and weights."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest

from lazarus_store import JobIdentity, open_store, shared
from lazarus_trainer.state import COMMON_OBJECT

from .harness import (
    NoS3,
    attempt_env,
    same_params,
    store_for,
    termination,
    trainer_env,
    wait_for,
)
from .proxy import Proxy

pytestmark = pytest.mark.e2e

SCRIPT = Path(__file__).with_name("hf_script.py")


def _proc(
    env: dict[str, str], tmp: Path, log: Path, sigterm_at: int, out: str, steps: int = 20
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            str(log),
            str(steps),
            str(sigterm_at),
            str(tmp / out),
            str(tmp / "hf-out"),
        ],
        env=env,
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _run(env: dict[str, str], tmp: Path, log: Path, sigterm_at: int, out: str) -> int:
    p = _proc(env, tmp, log, sigterm_at, out)
    assert p.returncode in (0, 75), p.stderr[-3000:]
    return p.returncode


def _curve(log: Path) -> list[tuple[int, float]]:
    rows = map(json.loads, log.read_text().splitlines())
    return [(d["step"], d["loss"]) for d in rows if "loss" in d]


def _evals(log: Path) -> list[tuple[int, float]]:
    rows = map(json.loads, log.read_text().splitlines())
    return [(d["step"], d["eval_loss"]) for d in rows if "eval_loss" in d]


def _history(out: Path) -> list[Any]:
    shape: list[Any] = json.loads(Path(f"{out}.history").read_text())
    return shape


def test_hf_trainer_resumes_with_same_loss_curve(s3: Any, bucket: str, tmp_path: Path) -> None:
    ref = tmp_path / "ref.jsonl"
    env = trainer_env(s3, f"s3://{bucket}/ref", tmp_path, LAZARUS_EVAL_METRIC="eval_loss")
    assert _run(env, tmp_path, ref, 0, "a.pt") == 0
    # The same fresh run again into the used root: refused before training (78, naming the
    # fix), not trained to the end with every save "already committed".
    p = _proc(env, tmp_path, tmp_path / "again.jsonl", 0, "c.pt")
    assert p.returncode == 78, p.stderr[-3000:]
    term = termination(tmp_path)
    assert term["outcome"] == "permanent-error" and "RESUME_FROM=auto" in term["message"], term
    assert not (tmp_path / "again.jsonl").exists()

    log = tmp_path / "int.jsonl"
    root = f"s3://{bucket}/int"
    env = trainer_env(s3, root, tmp_path, LAZARUS_ATTEMPT="1", LAZARUS_EVAL_METRIC="eval_loss")
    assert _run(env, tmp_path, log, 8, "b.pt") == 75
    term = termination(tmp_path)
    assert term["savedOnSignal"] and term["lastCheckpoint"]["step"] == 8, term
    env.update(LAZARUS_ATTEMPT="2", LAZARUS_RESUME_FROM="auto")
    assert _run(env, tmp_path, log, 0, "b.pt") == 0

    assert _curve(log) == _curve(ref)
    assert [s for s, _ in _curve(log)] == list(range(1, 21))
    assert same_params(tmp_path / "a.pt", tmp_path / "b.pt")


# Gradient accumulation, warmup and dropout; the metric comes from TrainingArguments
# (metric_for_best_model="loss", HF's spelling of eval_loss, with greater_is_better=True so
# the best evaluation is the first, at step 5, and load_best has weights to restore that
# differ from the final ones); retention keeps only the latest and the best.
FIDELITY = {
    "HF_TEST_ACCUM": "2",
    "HF_TEST_WARMUP": "3",
    "HF_TEST_BEST_METRIC": "loss",
    "HF_TEST_GREATER": "1",
    "HF_TEST_LOAD_BEST": "1",
    "LAZARUS_KEEP_LATEST": "1",
    "LAZARUS_KEEP_BEST": "1",
}


def test_hf_sigterms_on_evaluation_steps_resume_bitwise_and_keep_the_best(
    s3: Any, bucket: str, tmp_path: Path
) -> None:
    ref = tmp_path / "ref.jsonl"
    env = trainer_env(s3, f"s3://{bucket}/ref", tmp_path, **FIDELITY)
    assert _run(env, tmp_path, ref, 0, "a.pt") == 0
    ref_evals = dict(_evals(ref))
    assert sorted(ref_evals) == [5, 10, 15, 20]
    assert max(ref_evals, key=lambda s: ref_evals[s]) == 5, ref_evals  # the test's premise

    # SIGTERM on step 5 (an evaluation step, and the best one), then on step 10 (another).
    log, root = tmp_path / "int.jsonl", f"s3://{bucket}/int"
    store = store_for(s3, root)
    for attempt, stop in enumerate([5, 10, 0], start=1):
        env = attempt_env(
            s3,
            root,
            tmp_path,
            attempt,
            **FIDELITY,
        )
        assert _run(env, tmp_path, log, stop, "b.pt") == (75 if stop else 0)
        term = termination(tmp_path)
        if stop:
            assert term["savedOnSignal"] and term["lastCheckpoint"]["step"] == stop, term
            # The evaluation ran before the preemption checkpoint, which carries its metric.
            m = store.read_manifest(term["lastCheckpoint"]["name"])
            assert m.reason == "preemption" and m.metrics["eval_loss"] == ref_evals[stop], m

    assert _curve(log) == _curve(ref)
    assert [s for s, _ in _curve(log)] == list(range(1, 21))
    assert _evals(log) == _evals(ref)  # no evaluation skipped or repeated
    assert same_params(tmp_path / "a.pt", tmp_path / "b.pt")
    # The step-5 preemption checkpoint was the best: retention kept it (with the latest, and
    # step 10, which attempt 3 resumed from), and load_best loaded it.
    kept = {c.step: c for c in store.list_checkpoints() if c.committed}
    assert sorted(kept) == [5, 10, 20], sorted(kept)
    assert same_params(tmp_path / "a.pt.best", tmp_path / "b.pt.best")
    assert not same_params(tmp_path / "b.pt", tmp_path / "b.pt.best")


# eval_strategy="epoch": 28 rows, batch 4 and accumulation 2 make 7 micro-batches an epoch,
# so 4 optimizer steps (the last with one micro-batch) and an evaluation at each epoch's end.
EPOCHS = {**FIDELITY, "HF_TEST_EVAL_STRATEGY": "epoch", "HF_TEST_TRAIN_ROWS": "28"}


def test_hf_sigterms_at_epoch_end_evaluations_resume_bitwise_and_keep_the_best(
    s3: Any, bucket: str, tmp_path: Path
) -> None:
    ref = tmp_path / "ref.jsonl"
    env = trainer_env(s3, f"s3://{bucket}/ref", tmp_path, **EPOCHS)
    assert _run(env, tmp_path, ref, 0, "a.pt") == 0
    ref_evals = dict(_evals(ref))
    assert sorted(ref_evals) == [4, 8, 12, 16, 20], ref_evals
    assert max(ref_evals, key=lambda s: ref_evals[s]) == 4, ref_evals  # the test's premise

    # SIGTERM on step 4 (an epoch's last step, before its evaluation, the best one), on
    # step 10 (mid-epoch: stops at once, no evaluation), on step 16 (an epoch end again).
    log, root = tmp_path / "int.jsonl", f"s3://{bucket}/int"
    store = store_for(s3, root)
    for attempt, stop in enumerate([4, 10, 16, 0], start=1):
        env = attempt_env(
            s3,
            root,
            tmp_path,
            attempt,
            **EPOCHS,
        )
        assert _run(env, tmp_path, log, stop, "b.pt") == (75 if stop else 0)
        term = termination(tmp_path)
        if stop:
            assert term["savedOnSignal"] and term["lastCheckpoint"]["step"] == stop, term
            m = store.read_manifest(term["lastCheckpoint"]["name"])
            assert m.reason == "preemption", m
            # At an epoch end the evaluation ran first and its metric is the checkpoint's.
            assert m.metrics.get("eval_loss") == ref_evals.get(stop), m

    assert _curve(log) == _curve(ref)
    assert [s for s, _ in _curve(log)] == list(range(1, 21))
    assert _evals(log) == _evals(ref)  # none skipped, repeated, or added at the mid-epoch stop
    assert same_params(tmp_path / "a.pt", tmp_path / "b.pt")
    # HF's log_history, as the resumes restored it: the evaluations of the uninterrupted run,
    # and no end-of-training summary of a stopped attempt (only the last run's, at the end).
    hist, ref_hist = _history(tmp_path / "b.pt"), _history(tmp_path / "a.pt")
    assert [s for s, keys in hist if "eval_loss" in keys] == sorted(ref_evals)
    assert [i for i, (_, keys) in enumerate(hist) if "train_runtime" in keys] == [len(hist) - 1]
    assert hist[-1] == ref_hist[-1]
    kept = {c.step for c in store.list_checkpoints() if c.committed}
    assert {4, 20} <= kept, sorted(kept)  # the best (step 4's preemption checkpoint) survived
    assert same_params(tmp_path / "a.pt.best", tmp_path / "b.pt.best")
    assert not same_params(tmp_path / "b.pt", tmp_path / "b.pt.best")


def test_hf_epoch_evaluation_longer_than_the_grace_is_not_started(
    s3: Any, bucket: str, tmp_path: Path
) -> None:
    """Evaluations take 1s, the grace is 0.5s: a SIGTERM on the step-8 epoch end starts
    neither the evaluation nor a save (the message says so), and the resume replays from the
    step-4 eval-best checkpoint exactly."""
    slow = {**EPOCHS, "HF_TEST_EVAL_SLEEP": "1", "LAZARUS_GRACE_SECONDS": "0.5"}
    ref = tmp_path / "ref.jsonl"
    assert (
        _run(trainer_env(s3, f"s3://{bucket}/ref", tmp_path, **slow), tmp_path, ref, 0, "a.pt") == 0
    )
    root = f"s3://{bucket}/int"
    first, second = tmp_path / "int1.jsonl", tmp_path / "int2.jsonl"
    env = trainer_env(s3, root, tmp_path, LAZARUS_ATTEMPT="1", **slow)
    assert _run(env, tmp_path, first, 8, "b.pt") == 75
    term = termination(tmp_path)
    assert term["graceShortfall"] and not term["savedOnSignal"], term
    assert "an evaluation step" in term["message"] and term["lastCheckpoint"]["step"] == 4, term
    assert _evals(first) == _evals(ref)[:1]  # the step-8 evaluation was not run
    assert _curve(first) == _curve(ref)[:8]

    env.update(LAZARUS_ATTEMPT="2", LAZARUS_RESUME_FROM="auto")
    assert _run(env, tmp_path, second, 0, "b.pt") == 0
    assert _curve(second) == _curve(ref)[4:]  # steps 5-8 again, then on, as the reference
    assert _evals(second) == _evals(ref)[1:]
    assert same_params(tmp_path / "a.pt", tmp_path / "b.pt")


def test_hf_configuration_errors_exit_78(s3: Any, bucket: str, tmp_path: Path) -> None:
    env = trainer_env(s3, f"s3://{bucket}/job", tmp_path, LAZARUS_EVAL_MODE="sideways")
    p = _proc(env, tmp_path, tmp_path / "log.jsonl", 0, "a.pt")
    assert p.returncode == 78, p.stderr[-3000:]  # the operator does not retry it
    term = termination(tmp_path)
    assert term["outcome"] == "permanent-error" and "LAZARUS_EVAL_MODE" in term["message"], term


def test_hf_run_that_cannot_commit_fails_loudly(s3: Any, bucket: str, tmp_path: Path) -> None:
    """The store goes away once training runs: no checkpoint can be committed, so the run
    must not finish "green" (the script ends as the docs' snippet, without sys.exit)."""
    url = urlparse(s3.endpoint_url)
    proxy = Proxy(url.hostname or "127.0.0.1", url.port or 80)
    env = trainer_env(s3, f"s3://{bucket}/job", tmp_path, HF_TEST_FAST_RETRY="1")
    env["LAZARUS_S3_ENDPOINT"] = env["AWS_ENDPOINT_URL"] = f"http://127.0.0.1:{proxy.port}"
    log = tmp_path / "log.jsonl"
    args = [str(log), "12", "0", str(tmp_path / "a.pt"), str(tmp_path / "hf-out")]
    proc = subprocess.Popen(
        [sys.executable, str(SCRIPT), *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(log.exists, 120, "training to start")
        proxy.set_up(False)
        _, err = proc.communicate(timeout=300)
    finally:
        proc.kill()
        proxy.close()
    assert proc.returncode == 1, err[-3000:]
    term = termination(tmp_path)
    assert term["outcome"] == "error" and "final save failed" in term["message"], term


OWNER = {"LAZARUS_JOB_NAMESPACE": "team-a", "LAZARUS_JOB_NAME": "hf", "LAZARUS_JOB_UID": "uid-a"}


def test_hf_on_a_filesystem_root_fences_its_attempts_and_never_restarts_silently(
    tmp_path: Path,
) -> None:
    """Under the operator a filesystem root is fenced by the trainer (contract section 8):
    an HF run records its attempts like any other. And a resume whose every checkpoint
    fails validation is refused (78), never a silent fresh start that throws the work away."""
    root = tmp_path / "pvc" / "ckpt"
    root.parent.mkdir()  # the mounted volume
    log = tmp_path / "int.jsonl"
    store = open_store(str(root))
    ident = JobIdentity("hf", "team-a", "uid-a")
    for attempt, stop in [(1, 8), (2, 0)]:
        env = attempt_env(NoS3(), str(root), tmp_path, attempt, **OWNER)
        assert _run(env, tmp_path, log, stop, "b.pt") == (75 if stop else 0)
    assert [(r.attempt, r.resume_step, r.job) for r in store.attempts()] == [
        (1, -1, ident),
        (2, 8, ident),
    ]

    committed = [c.name for c in store.list_checkpoints() if c.committed]
    assert committed, "the test's premise: checkpoints to corrupt"
    # Each one's common object: whole in its prefix, or as chunks shared by the job.
    targets = [f for name in committed for f in (root / name / "trainer").glob("common.*")]
    for name in committed:
        entry = store.read_manifest(name).object(COMMON_OBJECT)
        targets += [root / shared.blob_key(entry.uid, c.sha256) for c in entry.chunks]
    assert targets, "the test's premise: bytes to corrupt"
    for f in set(targets):  # same size: only the checksum can tell
        data = bytearray(f.read_bytes())
        data[len(data) // 2] ^= 0xFF
        f.write_bytes(bytes(data))
    env = attempt_env(NoS3(), str(root), tmp_path, 3, **OWNER)
    p = _proc(env, tmp_path, tmp_path / "again.jsonl", 0, "c.pt")
    assert p.returncode == 78, p.stderr[-3000:]
    term = termination(tmp_path)
    assert "no loadable checkpoint" in term["message"], term
    assert not (tmp_path / "again.jsonl").exists()  # not one step trained from scratch
