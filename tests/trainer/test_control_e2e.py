"""Checkpoint-now requests, a grace period too short to save, and fencing: real processes, S3."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from lazarus_contract import ANNOTATION_CHECKPOINT_NOW

from .harness import command, losses, run, store_for, termination, trainer_env, wait_for

pytestmark = pytest.mark.e2e

SLOW = ["--steps", "2000", "--step-sleep", "0.05"]


def _annotations(path: Path, value: str) -> None:
    """Rewrite the downward-API file as kubelet does: a new file swapped into place."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(f'app="demo"\n{ANNOTATION_CHECKPOINT_NOW}="{value}"\n')
    tmp.replace(path)


def test_checkpoint_now_annotation_commits_a_requested_checkpoint(
    s3: Any, bucket: str, tmp_path: Path
) -> None:
    root = f"s3://{bucket}/job"
    log = tmp_path / "loss.jsonl"
    annotations = tmp_path / "annotations"
    _annotations(annotations, "2026-01-01T00:00:00Z")  # served by an earlier attempt
    env = trainer_env(s3, root, tmp_path, LAZARUS_ATTEMPT="1")
    store = store_for(s3, root)
    args = [*SLOW, "--save-every-steps", "1000", "--loss-log", str(log)]
    proc = subprocess.Popen(
        command(args), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        wait_for(lambda: log.exists() and len(losses(log)) >= 5, 120, "5 steps")
        asked_at = losses(log)[-1][0]
        _annotations(annotations, "2026-01-02T00:00:00Z")

        def requested() -> list[int]:
            return [
                c.step
                for c in store.list_checkpoints()
                if c.committed and c.manifest is not None and c.manifest.reason == "requested"
            ]

        wait_for(lambda: bool(requested()), 120, "a requested checkpoint")
        proc.terminate()
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 75, err[-3000:]
    steps = requested()
    assert len(steps) == 1, steps  # the value present at start-up was not served again
    assert asked_at <= steps[0] < 1000, (asked_at, steps)  # off the save schedule


def test_grace_shortfall_skips_the_save_and_says_so(s3: Any, bucket: str, tmp_path: Path) -> None:
    root = f"s3://{bucket}/job"
    env = trainer_env(
        s3,
        root,
        tmp_path,
        LAZARUS_ATTEMPT="1",
        LAZARUS_GRACE_SECONDS="0.001",  # any past save took longer than this
        LAZARUS_TEST_SIGTERM_AT_STEP="7",
    )
    # Synchronous saves: step 6's save is committed, not in flight, when SIGTERM arrives.
    p = run(["--steps", "20", "--save-every-steps", "3", "--sync-save"], env)
    assert p.returncode == 75, p.stderr[-3000:]
    term = termination(tmp_path)
    assert term["outcome"] == "preempted" and term["graceShortfall"] is True, term
    assert not term["savedOnSignal"], term
    assert "a save takes ~" in term["message"] and "grace left" in term["message"], term
    assert term["lastCheckpoint"]["step"] == 6, term
    listed = store_for(s3, root).list_checkpoints()
    assert sorted(c.step for c in listed) == [3, 6], [(c.name, c.committed) for c in listed]
    assert all(c.committed for c in listed), "a half-written checkpoint was left"


def test_fenced_out_trainer_stops_without_saving(s3: Any, bucket: str, tmp_path: Path) -> None:
    root = f"s3://{bucket}/job"
    store = store_for(s3, root)
    store.record_attempt(1, None, -1)
    env = trainer_env(s3, root, tmp_path, LAZARUS_ATTEMPT="1")
    args = [*SLOW, "--save-every-steps", "3"]
    proc = subprocess.Popen(
        command(args), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        wait_for(lambda: any(c.committed for c in store.list_checkpoints()), 120, "a commit")
        base = max((c for c in store.list_checkpoints() if c.committed), key=lambda c: c.step)
        # Attempt 2 starts from `base` while attempt 1 (a zombie) keeps training.
        store.record_attempt(2, base.name, base.step)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    text = err.decode()
    assert proc.returncode == 75, text[-3000:]
    assert "fenced out" in text, text[-3000:]
    term = termination(tmp_path)
    assert term["outcome"] == "preempted" and "fenced out" in term["message"], term
    assert not term["savedOnSignal"], term
    listed = store.list_checkpoints()
    assert not any(c.manifest and c.manifest.reason in ("preemption", "final") for c in listed)
    lineage = {c.name: c.in_lineage for c in store.candidates(2)}
    assert lineage[base.name]
    for c in listed:
        if c.step > base.step:  # the zombie's later saves: never attempt 2's progress
            assert not lineage[c.name], c.name
    chosen = store.latest_valid(attempt=2).chosen
    assert chosen is not None and chosen.step <= base.step, chosen
