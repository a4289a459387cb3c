"""Fault-tolerant replica groups (docs/fault-tolerance.md), real processes on this machine:
a lighthouse and two groups of a small model, one group SIGKILLed mid-run and replaced,
the lighthouse SIGKILLed and restarted. The survivors never restart."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest

from lazarus_contract.timings import decode

from .ft_harness import (
    FtJob,
    check_samples,
    contiguous_to_the_end,
    global_order,
    stalls,
    states_equal,
)

pytestmark = pytest.mark.e2e

STEPS, PAUSE = 600, 0.02


def test_survivor_keeps_training_and_replacement_heals_from_its_peer(tmp_path: Path) -> None:
    job = FtJob(tmp_path)
    try:
        job.start_lighthouse()
        survivor = job.start_group(0, STEPS, PAUSE)
        victim = job.start_group(1, STEPS, PAUSE)
        job.wait_step(1, 60)
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        killed_at = time.time()
        job.wait_step(0, job.steps(0)[-1]["step"] + 40)
        # The operator's replacement: same group, told to join its live peers.
        replacement = job.start_group(
            1, STEPS, PAUSE, LAZARUS_FT_REPLACEMENT="1", LAZARUS_RESUME_FROM="auto"
        )
        assert survivor.wait(240) == 0
        assert replacement.wait(240) == 0
    finally:
        job.stop()
    rows0 = job.rows(0)
    assert len({r["pid"] for r in rows0}) == 1, "the survivor restarted"
    assert contiguous_to_the_end(job, 0, STEPS)
    after = [r for r in job.steps(0) if r["t"] > killed_at]
    print(f"survivor's longest gaps between steps: {[round(s, 3) for s in stalls(rows0)[:3]]} s")
    assert after and after[0]["n"] == 1, "the survivor went on alone"
    start, end = (
        r for r in job.rows(1) if r["event"] in ("start", "end") and r["pid"] == replacement.pid
    )
    assert start["store_reads"] == [] and start["resumed"] is None, "the replacement read the store"
    assert end["store_reads"] == [], "the replacement read the store"
    assert end["healed_at"] is not None and end["healed_at"] > 60, "it took a peer's live state"
    print(f"live recovery of step {end['healed_at']}: {end['heal_seconds']:.3f} s to load")
    assert states_equal(job.final(0), job.final(1))
    print(f"{check_samples(job, unlogged=1)} samples, each once")
    # The writer recorded the failure with its next save (contract 4a): the stall, then
    # the time until the quorum was whole again.
    timings = [
        decode(json.loads(m.read_text())["extra"])
        for m in sorted((tmp_path / "ckpt").glob("step-*/manifest.json"))
    ]
    stalls_saved = [t.ft_stall_seconds for t in timings if t.ft_stall_seconds is not None]
    rejoins = [t.ft_rejoin_seconds for t in timings if t.ft_rejoin_seconds is not None]
    print(f"recorded: stall {stalls_saved} s, rejoin {rejoins} s")
    assert len(stalls_saved) == 1 and stalls_saved[0] > 0.5
    assert len(rejoins) == 1 and rejoins[0] > stalls_saved[0]


def test_groups_survive_a_lighthouse_restart(tmp_path: Path) -> None:
    job = FtJob(tmp_path)
    try:
        job.start_lighthouse()
        groups = [job.start_group(g, STEPS, PAUSE) for g in range(2)]
        job.wait_step(0, 60)
        assert job.lighthouse is not None
        job.lighthouse.send_signal(signal.SIGKILL)
        job.lighthouse.wait()
        time.sleep(1.0)
        job.start_lighthouse()
        assert [g.wait(240) for g in groups] == [0, 0]
    finally:
        job.stop()
    for group in range(2):
        assert len({r["pid"] for r in job.rows(group)}) == 1, f"group {group} restarted"
        assert contiguous_to_the_end(job, group, STEPS)
    print(f"longest gap: {stalls(job.rows(0))[0]:.2f} s")
    assert states_equal(job.final(0), job.final(1))
    check_samples(job)


def test_sigterm_the_writer_saves_and_the_whole_job_resumes_from_it(tmp_path: Path) -> None:
    """A whole-job stop (SIGTERM to every group): the lowest group commits the preemption
    checkpoint, the other stops without one; a whole-job restart resumes every group
    from it and ends with both groups equal, each sample used once from there."""
    job = FtJob(tmp_path)
    try:
        job.start_lighthouse()
        groups = [job.start_group(g, STEPS, PAUSE) for g in range(2)]
        job.wait_step(0, 80)
        job.wait_step(1, 80)
        for g in groups:
            g.send_signal(signal.SIGTERM)
        assert [g.wait(120) for g in groups] == [75, 75]
        saved = sorted(p.name for p in (tmp_path / "ckpt").glob("step-*"))
        stop = int(saved[-1].split("-")[1])
        assert stop > 80 and saved[0] == "step-000000000050-a0001", saved
        assert job.steps(0)[-1]["step"] == stop, "the writer's checkpoint is of its last step"
        writer, other = (json.loads((tmp_path / f"term-{g}.json").read_text()) for g in (0, 1))
        assert writer["savedOnSignal"] and writer["lastCheckpoint"]["step"] == stop
        assert "not the writer" in other["message"] and not other["savedOnSignal"]
        again = {"LAZARUS_ATTEMPT": "2", "LAZARUS_RESUME_FROM": "auto"}
        groups = [
            job.start_group(
                g, STEPS, PAUSE, None, LAZARUS_TERMINATION_LOG=str(tmp_path / f"a2-{g}"), **again
            )
            for g in range(2)
        ]
        assert [g.wait(240) for g in groups] == [0, 0]
    finally:
        job.stop()
    assert states_equal(job.final(0), job.final(1))
    taken: dict[int, list[int]] = {}
    for group in range(2):
        rows = job.rows(group)
        second = next(r["pid"] for r in rows if r["event"] == "start" and r["resumed"])
        for row in job.steps(group):
            if (row["pid"] == second) == (row["step"] > stop):  # what the run kept
                taken.setdefault(row["step"], []).extend(row["ids"])
    assert sorted(taken) == list(range(1, STEPS + 1))
    ids = [i for step in sorted(taken) for i in taken[step]]
    assert sorted(ids) == sorted(global_order()[: len(ids)]) and len(ids) == len(set(ids))
