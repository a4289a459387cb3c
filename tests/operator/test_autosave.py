"""The automatic interval's operator side as tables: the rate advertised on the running
attempt's pods and in status.saveInterval, moved only when the estimate moves, the
namespace's other jobs pooled in, and the trainer's chosen interval and cost shown."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from lazarus_contract.interval import ANNOTATION_FAILURE_RATE
from lazarus_operator.autosave import plan
from lazarus_operator.failure_rate import Pool
from lazarus_operator.jobstatus import JobStatus
from lazarus_operator.records import HistoryEntry
from lazarus_operator.spec import AutoSave
from lazarus_operator.vocabulary import AnnotatePod

pytestmark = pytest.mark.unit

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
AUTO = AutoSave(enabled=True, prior_mtbf_seconds=3600)
JOB = ("ns", "uid-1")


def at(hours_ago: float) -> str:
    return (NOW - timedelta(hours=hours_ago)).strftime("%Y-%m-%dT%H:%M:%SZ")


def pod(name: str, rate: str | None = None, deleting: bool = False) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "annotations": {}}
    if rate is not None:
        meta["annotations"][ANNOTATION_FAILURE_RATE] = rate
    if deleting:
        meta["deletionTimestamp"] = at(0)
    return {"metadata": meta}


def status(
    failures: int, hours: float, extra: dict[str, Any] | None = None, cause: str = "Failed"
) -> JobStatus:
    """`failures` attempts that ended by `cause`, one after another over `hours`, then an
    attempt running for an hour."""
    step = hours / failures if failures else 0.0
    history = [
        HistoryEntry(
            started_at=at(1 + hours - i * step),
            ended_at=at(1 + hours - (i + 1) * step),
            cause=cause,
        )
        for i in range(failures)
    ]
    return JobStatus(history=history, attempt_started_at=at(1), extra=extra or {})


def test_a_fresh_job_advertises_the_prior_on_its_live_pods() -> None:
    got = plan(
        AUTO, JOB, status(0, 0), pods=[pod("a"), pod("b", deleting=True)], now=NOW, pool=Pool()
    )
    # one hour of the running attempt, no failure: (1) / (3600 + 3600) per second
    assert got.status["failuresPerHour"] == 0.5
    assert got.status["source"] in ("prior", "job") and got.status["failures"] == 0
    assert got.status["exposureSeconds"] == 3600
    assert got.annotate == [AnnotatePod("a", {ANNOTATION_FAILURE_RATE: "0.5"})]


def test_pods_that_have_the_value_are_not_patched() -> None:
    got = plan(AUTO, JOB, status(0, 0), pods=[pod("a", "0.5")], now=NOW, pool=Pool())
    assert got.annotate == []


def test_the_rate_moves_only_past_ten_percent() -> None:
    # advertised 0.48 before; the estimate is 0.5 now (4% off): keep 0.48 everywhere
    kept = plan(
        AUTO,
        JOB,
        status(0, 0, {"saveInterval": {"failuresPerHour": 0.48}}),
        pods=[pod("a", "0.5")],
        now=NOW,
        pool=Pool(),
    )
    assert kept.status["failuresPerHour"] == 0.48
    assert kept.annotate == [AnnotatePod("a", {ANNOTATION_FAILURE_RATE: "0.48"})]
    moved = plan(
        AUTO,
        JOB,
        status(0, 0, {"saveInterval": {"failuresPerHour": 0.3}}),
        pods=[],
        now=NOW,
        pool=Pool(),
    )
    assert moved.status["failuresPerHour"] == 0.5


def test_failures_raise_the_rate() -> None:
    # 4 crashes in 3 h, plus 1 h running: (1 + 4) / (1 h prior + 4 h)
    got = plan(AUTO, JOB, status(4, 3), pods=[], now=NOW, pool=Pool())
    assert got.status["failuresPerHour"] == 1.0 and got.status["failures"] == 4
    assert got.status["source"] == "job"


def test_a_neighbours_crashes_are_its_own() -> None:
    pool = Pool()
    plan(AUTO, ("ns", "old"), status(30, 9), pods=[], now=NOW, pool=pool)  # 3 crashes an hour
    young = plan(AUTO, JOB, JobStatus(), pods=[], now=NOW, pool=pool)
    alone = plan(AUTO, JOB, JobStatus(), pods=[], now=NOW, pool=Pool())
    assert young.status["failuresPerHour"] < alone.status["failuresPerHour"]  # its quiet hours


def test_the_namespace_informs_a_young_job() -> None:
    pool = Pool()
    old = status(30, 9, cause="NodeLost")  # 3 lost nodes an hour
    plan(AUTO, ("ns", "old"), old, pods=[], now=NOW, pool=pool)
    young = plan(AUTO, JOB, JobStatus(), pods=[], now=NOW, pool=pool)
    alone = plan(AUTO, JOB, JobStatus(), pods=[], now=NOW, pool=Pool())
    assert young.status["failuresPerHour"] > alone.status["failuresPerHour"]
    other_ns = plan(AUTO, ("elsewhere", "u"), JobStatus(), pods=[], now=NOW, pool=pool)
    assert other_ns.status["failuresPerHour"] == alone.status["failuresPerHour"]


def test_the_trainers_choice_is_shown_from_the_newest_checkpoint() -> None:
    extra = {
        "lazarusTrainer": {
            "timings": {
                "intervalSeconds": 612.5,
                "saveCostSeconds": 4.2,
                "failuresPerHour": 0.5,
                "stallSeconds": 0.1,
            }
        }
    }
    got = plan(
        AUTO,
        JOB,
        status(0, 0),
        pods=[],
        now=NOW,
        pool=Pool(),
        chosen=("step-000000000100-a0001", extra),
    )
    assert got.status["intervalSeconds"] == 612.5 and got.status["saveCostSeconds"] == 4.2
    assert got.status["checkpoint"] == "step-000000000100-a0001"
    # a checkpoint without them (a fixed schedule's, another writer's) changes nothing
    again = plan(
        AUTO,
        JOB,
        JobStatus(extra={"saveInterval": got.status}),
        pods=[],
        now=NOW,
        pool=Pool(),
        chosen=("step-000000000200-a0001", {}),
    )
    assert again.status["checkpoint"] == "step-000000000100-a0001"
