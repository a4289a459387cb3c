"""The metrics module records what `accounting` observes, with bounded labels, and
forgets a deleted job's series."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from lazarus_operator.builders import JobRef
from lazarus_operator.metrics import Metrics

pytestmark = pytest.mark.unit
JOB = JobRef("llm", "ml", "uid-1")
T0 = datetime(2026, 1, 1, tzinfo=UTC)
L = {"namespace": "ml", "trainingjob": "llm"}


def test_a_restart_becomes_counters_a_histogram_and_gauges() -> None:
    reg = CollectorRegistry()
    m = Metrics(reg)
    run1 = {"phase": "Running", "attempt": 1}
    ended = {
        "phase": "Restarting",
        "attempt": 1,
        "restarts": {"nodeLost": 1, "total": 1},
        "pendingRestart": {"cause": "NodeLost"},
    }
    ck = {"latestCheckpoint": {"step": 40, "time": "2026-01-01T00:00:05Z"}}
    relaunched = {"phase": "Pending", "attempt": 2, "lostSteps": 7, **ck}
    steps = [({}, run1, 0), (run1, ended, 10), (ended, relaunched, 12)]
    steps.append((relaunched, {**relaunched, "phase": "Running"}, 15))
    for old, new, sec in steps:
        m.observe(JOB, old, new, T0 + timedelta(seconds=sec))
    m.observe_checkpoint(
        JOB, "c40", {"lazarusTrainer": {"timings": {"saveSeconds": 2.0, "bytes": 10}}}
    )
    m.observe_checkpoint(JOB, "c40", {"lazarusTrainer": {"timings": {"bytes": 10}}})  # seen
    get = reg.get_sample_value
    assert get("lazarus_restarts_total", {**L, "cause": "nodeLost"}) == 1
    assert get("lazarus_restarts_total", {**L, "cause": "failed"}) == 0
    assert get("lazarus_lost_steps_total", {**L, "cause": "nodeLost"}) == 7
    assert get("lazarus_lost_seconds_total", {**L, "cause": "nodeLost"}) == 5
    assert get("lazarus_recovery_seconds_sum", {**L, "cause": "nodeLost"}) == 5
    assert get("lazarus_job_seconds_total", {**L, "state": "productive"}) == 5
    assert get("lazarus_job_seconds_total", {**L, "state": "restarting"}) == 5
    assert get("lazarus_job_phase", {**L, "phase": "Running"}) == 1
    assert get("lazarus_job_phase", {**L, "phase": "Pending"}) == 0
    assert get("lazarus_checkpoint_step", L) == 40
    assert get("lazarus_checkpoint_timestamp_seconds", L) == (T0 + timedelta(seconds=5)).timestamp()
    assert get("lazarus_checkpoint_written_bytes_total", L) == 10
    assert get("lazarus_checkpoint_save_seconds_count", L) == 1

    m.forget("ml", "llm")
    text = generate_latest(reg).decode()
    assert 'trainingjob="llm"' not in text
    assert "lazarus_operator_info" in text


def test_labels_never_name_pods_or_steps() -> None:
    reg = CollectorRegistry()
    m = Metrics(reg)
    m.observe(JOB, {}, {"phase": "Running", "attempt": 3}, T0)
    labels = {k for fam in reg.collect() for s in fam.samples for k in s.labels}
    assert labels <= {"namespace", "trainingjob", "cause", "state", "phase", "le", "version"}
