"""Status transitions -> metrics observations, one job life per test (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from lazarus_operator import accounting as acc
from lazarus_operator import status as s
from lazarus_operator.builders import JobRef
from lazarus_operator.transition import between

pytestmark = pytest.mark.unit
T0 = datetime(2026, 1, 1, tzinfo=UTC)
JOB = JobRef("j", "ns", "uid-1")


def at(sec: float) -> datetime:
    return T0 + timedelta(seconds=sec)


def ckpt(step: int, sec: float) -> dict[str, Any]:
    return {"latestCheckpoint": {"step": step, "name": f"c{step}", "time": s.iso(at(sec))}}


def replay(steps: list[tuple[float, dict[str, Any]]]) -> tuple[acc.Observations, acc.Clock]:
    """Feed statuses in order (each a cycle's result); sum every observation."""
    total = acc.Observations()
    clock: acc.Clock | None = None
    old: dict[str, Any] = {}
    for sec, new in steps:
        clock, o = acc.account(clock, between(JOB, old, new, at(sec)))
        for k, v in o.seconds.items():
            total.add(k, v)
        for name in ("restarts", "lost_steps", "lost_seconds", "replacements"):
            mine, theirs = getattr(total, name), getattr(o, name)
            for k, v in theirs.items():
                mine[k] = mine.get(k, 0) + v
        total.recovered += o.recovered
        total.lighthouse_restarts += o.lighthouse_restarts
        total.phase = o.phase
        total.checkpoint_step, total.checkpoint_time = o.checkpoint_step, o.checkpoint_time
        old = new
    assert clock is not None
    return total, clock


RUN1 = {"phase": s.RUNNING, "attempt": 1}


def test_preempted_once_then_succeeds() -> None:
    ended = {
        "phase": s.RESTARTING,
        "attempt": 1,
        "restarts": {"disrupted": 1, "total": 1},
        "pendingRestart": {"cause": "Disrupted", "lastStep": 130},
        **ckpt(100, 30),
    }
    o, _ = replay(
        [
            (0, {"phase": s.PENDING, "attempt": 1}),
            (10, RUN1),
            (40, {**RUN1, **ckpt(100, 30)}),  # progress: 10..30 survived
            (50, ended),
            (55, {"phase": s.PENDING, "attempt": 2, "lostSteps": 30, **ckpt(100, 30)}),
            (60, {"phase": s.RUNNING, "attempt": 2, "lostSteps": 30, **ckpt(100, 30)}),
            (100, {"phase": s.SUCCEEDED, "attempt": 2, "lostSteps": 30, **ckpt(200, 99)}),
        ]
    )
    assert o.seconds == {
        acc.PENDING: 10,
        acc.PRODUCTIVE: 20 + 40,
        acc.RESTARTING: 10,
        acc.LOST: 20,
    }
    assert sum(o.seconds.values()) == 100  # every second of the wall clock, once
    assert o.restarts == {"disrupted": 1}
    assert o.lost_steps == {"disrupted": 30}
    assert o.lost_seconds == {"disrupted": 20}
    assert o.recovered == [("disrupted", 10)]
    assert o.phase == s.SUCCEEDED
    assert o.checkpoint_step == 200 and o.checkpoint_time == at(99).timestamp()


def test_checkpoint_at_the_end_saves_the_attempt() -> None:
    """A preemption checkpoint committed as the pods stop: nothing is lost."""
    o, _ = replay(
        [
            (0, RUN1),
            (
                30,
                {
                    "phase": s.RESTARTING,
                    "attempt": 1,
                    "restarts": {"nodeLost": 1},
                    "pendingRestart": {"cause": "NodeLost"},
                },
            ),
            (32, {"phase": s.PENDING, "attempt": 2, **ckpt(300, 30)}),
        ]
    )
    assert o.seconds == {acc.PRODUCTIVE: 30, acc.RESTARTING: 2}
    assert o.lost_seconds == {"nodeLost": 0} and o.lost_steps == {"nodeLost": 0}


def test_failed_job_loses_time_after_its_last_checkpoint() -> None:
    o, clock = replay(
        [
            (0, {"phase": s.PENDING, "attempt": 1}),
            (5, RUN1),
            (20, {**RUN1, **ckpt(10, 15)}),
            (45, {"phase": s.FAILED, "attempt": 1, "restarts": {"oomKilled": 1}, **ckpt(10, 15)}),
            (90, {"phase": s.FAILED, "attempt": 1, **ckpt(10, 15)}),  # finished: no more time
        ]
    )
    assert o.seconds == {acc.PENDING: 5, acc.PRODUCTIVE: 10, acc.LOST: 30}
    assert o.restarts == {"oomKilled": 1}
    assert clock.run_from is None and clock.ended is None


def test_suspend_is_not_a_restart() -> None:
    o, _ = replay(
        [
            (0, RUN1),
            (10, {"phase": s.SUSPENDED, "attempt": 1}),
            (70, {"phase": s.PENDING, "attempt": 2, **ckpt(50, 10)}),
            (75, {"phase": s.RUNNING, "attempt": 2, **ckpt(50, 10)}),
        ]
    )
    assert o.seconds == {acc.PRODUCTIVE: 10, acc.SUSPENDED: 60, acc.PENDING: 5}
    assert o.restarts == {} and o.lost_steps == {} and o.recovered == []


def test_crash_loop_counts_every_failure_and_recovery() -> None:
    steps: list[tuple[float, dict[str, Any]]] = [(0, RUN1)]
    for n in range(1, 4):
        t = 10.0 * n
        steps.append(
            (
                t,
                {
                    "phase": s.RESTARTING,
                    "attempt": n,
                    "restarts": {"failed": n},
                    "failuresWithoutProgress": n,
                    "pendingRestart": {"cause": "Failed", "attempt": n},
                },
            )
        )
        steps.append((t + 2, {"phase": s.PENDING, "attempt": n + 1, "restarts": {"failed": n}}))
        steps.append((t + 3, {"phase": s.RUNNING, "attempt": n + 1, "restarts": {"failed": n}}))
    o, _ = replay(steps)
    assert o.restarts == {"failed": 3}
    assert o.recovered == [("failed", 3.0)] * 3
    # no checkpoint ever: all running time is lost once settled
    assert o.seconds[acc.LOST] == 10 + 7 + 7
    assert o.seconds[acc.RESTARTING] == 9
    assert acc.PRODUCTIVE not in o.seconds


def test_first_sight_of_a_running_job_starts_its_clock_now() -> None:
    """An operator restart: no back-filling of time it did not watch."""
    clock, o = acc.account(None, between(JOB, RUN1, RUN1, at(100)))
    assert o.seconds == {} and clock.run_from == at(100)
    clock, o = acc.account(clock, between(JOB, RUN1, {**RUN1, **ckpt(7, 130)}, at(140)))
    assert o.seconds == {acc.PRODUCTIVE: 30}


def test_a_replaced_group_is_no_restart_and_the_survivors_time_stays_productive() -> None:
    """spec.faultTolerance: group 1 crashes at 40 s and is replaced, its node is lost at
    70 s and it is replaced again, the lighthouse is recreated once; the job never
    leaves Running, so nothing is lost and every second is productive."""
    groups = {"generations": [0, 1], "replacements": {"failed": 1, "total": 1}}
    again = {
        "generations": [0, 2],
        "replacements": {"failed": 1, "nodeLost": 1, "total": 2},
        "lighthouseRestarts": 1,
    }
    o, _ = replay(
        [
            (0, RUN1),
            (40, {**RUN1, "faultTolerance": groups}),
            (70, {**RUN1, "faultTolerance": again}),
            (100, {**RUN1, "faultTolerance": again, "phase": s.SUCCEEDED}),
        ]
    )
    assert o.replacements == {"failed": 1, "nodeLost": 1}
    assert o.lighthouse_restarts == 1
    assert o.restarts == {} and o.lost_steps == {}
    assert o.seconds == {acc.PRODUCTIVE: 100.0}
