"""The metrics module records what `accounting` observes, with bounded labels: at most
15 series a job, counted from a real render; distributions and lifecycle counters per
namespace, which outlive the jobs; a finished job's series go after the window, a
deleted job's at once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from lazarus_operator.builders import JobRef
from lazarus_operator.metrics import Metrics, save_interval
from lazarus_operator.spec import AutoSave, CheckpointSpec
from lazarus_operator.transition import between

pytestmark = pytest.mark.unit
JOB = JobRef("llm", "ml", "uid-1")
T0 = datetime(2026, 1, 1, tzinfo=UTC)
L = {"namespace": "ml", "trainingjob": "llm"}
NS = {"namespace": "ml"}
CAUSES = (
    ("Disrupted", "disrupted"),
    ("NodeLost", "nodeLost"),
    ("OOMKilled", "oomKilled"),
    ("Failed", "failed"),
)
CK = CheckpointSpec(uri="s3://b/r", save_every_seconds=600, save_every_steps=500)


class Clock:
    """The scrape's wall clock, moved by the test."""

    def __init__(self, t: datetime) -> None:
        self.t = t.timestamp()

    def __call__(self) -> float:
        return self.t


def at(sec: float) -> datetime:
    return T0 + timedelta(seconds=sec)


def life(m: Metrics, job: JobRef = JOB, end: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run, a checkpoint, one restart of each cause, run again (then `end`, if given),
    a cycle every 5 s; returns the last status."""
    old: dict[str, Any] = {}
    t = 0.0

    def cycle(new: dict[str, Any]) -> None:
        nonlocal old, t
        t += 5
        m.observe(between(job, old, new, at(t)), CK)
        old = new

    ck = {"latestCheckpoint": {"step": 40, "time": "2026-01-01T00:00:05Z"}, "stepRate": 4.0}
    cycle({"phase": "Running", "attempt": 1, **ck})
    for i, (cause, key) in enumerate(CAUSES, start=1):
        restarts = {**(old.get("restarts") or {}), key: 1}
        pending = {"cause": cause}
        cycle({**old, "phase": "Restarting", "restarts": restarts, "pendingRestart": pending})
        relaunched = {k: v for k, v in old.items() if k != "pendingRestart"}
        cycle({**relaunched, "phase": "Pending", "attempt": i + 1, "lostSteps": 7 * i})
        cycle({**old, "phase": "Running"})
    if end is not None:
        cycle({**old, **end})
    return old


def series(reg: CollectorRegistry, needle: str) -> list[str]:
    """The rendered sample lines that contain `needle`."""
    lines = generate_latest(reg).decode().splitlines()
    return [x for x in lines if not x.startswith("#") and needle in x]


def test_a_restart_becomes_job_counters_and_namespace_distributions() -> None:
    reg = CollectorRegistry()
    m = Metrics(reg)
    life(m)
    m.observe_checkpoint(
        JOB, "c40", {"lazarusTrainer": {"timings": {"saveSeconds": 2.0, "bytes": 10}}}
    )
    m.observe_checkpoint(JOB, "c40", {"lazarusTrainer": {"timings": {"bytes": 10}}})  # seen
    get = reg.get_sample_value
    for cause in ("disrupted", "nodeLost", "oomKilled", "failed"):
        assert get("lazarus_restarts_total", {**L, "cause": cause}) == 1
        assert get("lazarus_lost_steps_total", {**NS, "cause": cause}) == 7
        assert get("lazarus_recovery_seconds_sum", {**NS, "cause": cause}) == 10
    assert get("lazarus_job_lost_steps_total", L) == 28
    assert get("lazarus_job_phase", {**L, "phase": "Running"}) == 1
    assert get("lazarus_job_phase", {**L, "phase": "Pending"}) is None  # current only
    assert get("lazarus_checkpoint_step", L) == 40
    assert get("lazarus_checkpoint_timestamp_seconds", L) == at(5).timestamp()
    assert get("lazarus_checkpoint_interval_seconds", L) == 125  # 500 steps at 4/s
    assert get("lazarus_checkpoint_written_bytes_total", NS) == 10
    assert get("lazarus_checkpoint_save_seconds_count", NS) == 1
    assert get("lazarus_jobs_created_total", NS) == 1

    m.forget("ml", "llm")
    assert series(reg, 'trainingjob="llm"') == []
    assert get("lazarus_jobs_created_total", NS) == 1  # outlives the job
    assert get("lazarus_recovery_seconds_count", {**NS, "cause": "failed"}) == 1
    assert series(reg, "lazarus_operator_info")


def test_a_job_has_at_most_15_series_whatever_happened_to_it() -> None:
    reg = CollectorRegistry()
    m = Metrics(reg)
    other = JobRef("other", "ml", "uid-2")
    life(m, other)
    m.observe_checkpoint(other, "c1", {"lazarusTrainer": {"timings": {"saveSeconds": 1.0}}})
    before = len(series(reg, ""))
    life(m)  # every per-job series set: checkpoint, interval, restarts of each cause
    m.observe_checkpoint(JOB, "c2", {"lazarusTrainer": {"timings": {"saveSeconds": 1.0}}})
    mine = series(reg, 'trainingjob="llm"')
    assert len(mine) <= 15, "\n".join(mine)
    assert len(series(reg, "")) - before == len(mine)  # a job adds nothing elsewhere
    assert series(reg, "lazarus_checkpoint_interval_seconds{")  # the interval is one of them


def test_a_queued_job_exports_its_phase_as_queued_and_the_wait_as_pending() -> None:
    """The stuck-Queued alert reads lazarus_job_phase{phase="Queued"}; a job waiting
    for Kueue's admission has that one phase series, and its wait counts as pending."""
    reg = CollectorRegistry()
    m = Metrics(reg)
    queued = {"phase": "Queued"}
    m.observe(between(JOB, {}, queued, at(0)), CK)
    m.observe(between(JOB, queued, queued, at(30)), CK)
    get = reg.get_sample_value
    assert get("lazarus_job_phase", {**L, "phase": "Queued"}) == 1
    assert len(series(reg, "lazarus_job_phase{")) == 1
    assert get("lazarus_job_seconds_total", {**L, "state": "pending"}) == 30
    m.observe(between(JOB, queued, {"phase": "Running", "attempt": 1}, at(40)), CK)
    assert get("lazarus_job_phase", {**L, "phase": "Queued"}) is None
    assert get("lazarus_job_phase", {**L, "phase": "Running"}) == 1


def test_a_finished_jobs_series_go_after_the_window_and_stay_gone() -> None:
    reg = CollectorRegistry()
    clock = Clock(T0)
    m = Metrics(reg, keep_finished=3600, clock=clock)
    done = life(m, end={"phase": "Succeeded", "finishedAt": "2026-01-01T00:02:00Z"})
    finished = at(120)
    clock.t = (finished + timedelta(seconds=3599)).timestamp()
    assert series(reg, 'phase="Succeeded"')
    clock.t += 2
    assert series(reg, 'trainingjob="llm"') == []
    m.observe(between(JOB, done, done, datetime.fromtimestamp(clock.t, UTC)), CK)  # a later resync
    assert series(reg, 'trainingjob="llm"') == []
    get = reg.get_sample_value
    assert get("lazarus_jobs_succeeded_total", NS) == 1
    assert get("lazarus_jobs_created_total", NS) == 1

    # A new operator process counts neither the launch nor the end again, and does
    # not bring the long-finished job's series back.
    reg2 = CollectorRegistry()
    m2 = Metrics(reg2, keep_finished=3600, clock=clock)
    m2.observe(between(JOB, done, done, datetime.fromtimestamp(clock.t, UTC)), CK)
    assert series(reg2, 'trainingjob="llm"') == []
    assert reg2.get_sample_value("lazarus_jobs_succeeded_total", NS) == 0
    assert reg2.get_sample_value("lazarus_jobs_created_total", NS) == 0


def test_a_failed_job_is_counted_once_and_kept_for_the_window() -> None:
    reg = CollectorRegistry()
    clock = Clock(T0)
    m = Metrics(reg, keep_finished=600, clock=clock)
    failed = life(m, end={"phase": "Failed"})  # no finishedAt: the first cycle that saw it
    m.observe(between(JOB, failed, failed, at(200)), CK)  # a later resync does not move the window
    clock.t = at(70 + 599).timestamp()
    assert series(reg, 'phase="Failed"')
    assert reg.get_sample_value("lazarus_jobs_failed_total", NS) == 1
    assert reg.get_sample_value("lazarus_jobs_succeeded_total", NS) == 0
    clock.t += 2
    assert series(reg, 'trainingjob="llm"') == []


@pytest.mark.parametrize(
    ("seconds", "steps", "rate", "expected"),
    [
        (0, 0, 2.0, None),  # no hint
        (600, 0, None, 600.0),
        (0, 500, 2.0, 250.0),  # steps at the trainer's pace
        (0, 500, None, None),  # no pace yet
        (0, 500, 0, None),
        (600, 500, 2.0, 250.0),  # whichever comes sooner
        (100, 500, 2.0, 100.0),
        (0, 500, "fast", None),
    ],
)
def test_the_save_interval(seconds: int, steps: int, rate: Any, expected: float | None) -> None:
    ck = CheckpointSpec(uri="s3://b/r", save_every_seconds=seconds, save_every_steps=steps)
    assert save_interval(ck, rate) == expected


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ({"intervalSeconds": 612.5, "failuresPerHour": 0.5}, 612.5),  # the trainer's choice
        ({"failuresPerHour": 0.5}, None),  # no checkpoint has said yet
        (None, None),
        ({"intervalSeconds": True}, None),
    ],
)
def test_the_automatic_save_interval_is_the_trainers(status: Any, expected: float | None) -> None:
    ck = CheckpointSpec(uri="s3://b/r", save_every_seconds=60, save_auto=AutoSave(enabled=True))
    assert save_interval(ck, 2.0, status) == expected


def test_labels_never_name_pods_or_steps() -> None:
    reg = CollectorRegistry()
    m = Metrics(reg)
    m.observe(between(JOB, {}, {"phase": "Running", "attempt": 3}, T0))
    labels = {k for fam in reg.collect() for s in fam.samples for k in s.labels}
    assert labels <= {"namespace", "trainingjob", "cause", "state", "phase", "le", "version"}


def test_replica_groups_stalls_and_rejoins_become_namespace_distributions() -> None:
    """The writer's ft timings (contract 4a) of one checkpoint, observed once."""
    reg = CollectorRegistry()
    m = Metrics(reg)
    ft = {"ftStallSeconds": 1.04, "ftRejoinSeconds": 6.5}
    m.observe_checkpoint(JOB, "c50", {"lazarusTrainer": {"timings": ft}})
    m.observe_checkpoint(JOB, "c50", {"lazarusTrainer": {"timings": ft}})  # seen
    get = reg.get_sample_value
    assert get("lazarus_ft_stall_seconds_count", NS) == 1
    assert get("lazarus_ft_stall_seconds_bucket", {**NS, "le": "1.5"}) == 1
    assert get("lazarus_ft_stall_seconds_bucket", {**NS, "le": "1.0"}) == 0
    assert get("lazarus_ft_rejoin_seconds_sum", NS) == 6.5
