"""The automatic interval in a real trainer process: it follows the failure rate written
into its annotations file while it runs (no restart), and each periodic checkpoint
records the interval, the save cost and the rate it came from (issue 29)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from lazarus_contract.interval import (
    ANNOTATION_FAILURE_RATE,
    TIMINGS_FAILURES_PER_HOUR,
    TIMINGS_INTERVAL,
    TIMINGS_SAVE_COST,
)

from .harness import NoS3, command, losses, run, trainer_env, wait_for

pytestmark = pytest.mark.e2e


def manifests(root: Path) -> list[dict[str, Any]]:
    found = [json.loads(p.read_text()) for p in sorted(root.glob("step-*/manifest.json"))]
    return sorted(found, key=lambda m: int(m["step"]))


def test_the_interval_follows_the_rate_handed_over_live(tmp_path: Path) -> None:
    root, log = tmp_path / "ckpt", tmp_path / "loss.jsonl"
    annotations = tmp_path / "annotations"
    annotations.write_text(f'{ANNOTATION_FAILURE_RATE}="0.001"\n')  # MTBF 1000 h: the max
    env = trainer_env(
        NoS3(),
        str(root),
        tmp_path,
        LAZARUS_ATTEMPT="1",
        LAZARUS_SAVE_AUTO="1",
        LAZARUS_SAVE_AUTO_MIN_SECONDS="0.3",
        LAZARUS_SAVE_AUTO_MAX_SECONDS="1000",
    )
    args = ["--steps", "120", "--step-sleep", "0.05", "--loss-log", str(log)]
    proc = subprocess.Popen(command(args), env=env, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: log.exists() and len(losses(log)) >= 60, 120, "60 steps")
        # A rate so high that Daly's interval is below the lower bound: save at the bound.
        annotations.write_text(f'{ANNOTATION_FAILURE_RATE}="36000"\n')
        switched = len(losses(log))
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 0, err[-2000:]
    periodic = [m for m in manifests(root) if m["reason"] == "periodic"]
    before = [m for m in periodic if m["step"] <= switched]
    after = [m for m in periodic if m["step"] > switched + 20]  # the file is read within 1 s
    # Before: one save at the lower bound to measure the cost, then the upper bound.
    assert len(before) == 1, [m["step"] for m in periodic]
    assert len(after) >= 3, [m["step"] for m in periodic]
    first = before[0]["extra"]["lazarusTrainer"]["timings"]
    assert first[TIMINGS_INTERVAL] == 0.3 and TIMINGS_SAVE_COST not in first
    assert first[TIMINGS_FAILURES_PER_HOUR] == pytest.approx(0.001)
    last = after[-1]["extra"]["lazarusTrainer"]["timings"]
    assert last[TIMINGS_FAILURES_PER_HOUR] == pytest.approx(36000)
    assert last[TIMINGS_SAVE_COST] > 0 and last[TIMINGS_INTERVAL] == 0.3


def test_a_restarted_trainer_starts_from_the_cost_its_checkpoint_recorded(
    tmp_path: Path,
) -> None:
    """A restart does not forget the save cost: the next attempt's first save already
    follows the cost the checkpoint it resumed from recorded, instead of measuring
    it again at the first interval (once per restart, which frequent failures pay)."""
    root, annotations = tmp_path / "ckpt", tmp_path / "annotations"
    annotations.write_text(f'{ANNOTATION_FAILURE_RATE}="36000"\n')  # Daly: the lower bound
    auto = {
        "LAZARUS_SAVE_AUTO": "1",
        "LAZARUS_SAVE_AUTO_MIN_SECONDS": "0.3",
        "LAZARUS_SAVE_AUTO_MAX_SECONDS": "1000",
    }
    for attempt, steps in ((1, 30), (2, 60)):
        env = trainer_env(NoS3(), str(root), tmp_path, LAZARUS_ATTEMPT=str(attempt), **auto)
        if attempt == 2:
            env["LAZARUS_RESUME_FROM"] = "auto"
        done = run(["--steps", str(steps), "--step-sleep", "0.05"], env)
        assert done.returncode == 0, done.stderr[-2000:]
    by_attempt: dict[int, list[dict[str, Any]]] = {1: [], 2: []}
    for m in manifests(root):
        by_attempt[timings(m)["attempt"]].append(m)
    resumed = timings(by_attempt[1][-1])  # attempt 1's last save: attempt 2 resumed it
    first = timings(by_attempt[2][0])
    assert by_attempt[2][0]["step"] > by_attempt[1][-1]["step"]
    assert resumed[TIMINGS_SAVE_COST] > 0
    assert first[TIMINGS_SAVE_COST] == resumed[TIMINGS_SAVE_COST]
    assert first[TIMINGS_FAILURES_PER_HOUR] == pytest.approx(36000)


def timings(m: dict[str, Any]) -> dict[str, Any]:
    t: dict[str, Any] = m["extra"]["lazarusTrainer"]["timings"]
    return t
