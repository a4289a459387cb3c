"""`JobSeries` exposes what prometheus_client's own Counter, Gauge and Histogram
would for the same observations, in a fraction of their memory per job."""

from __future__ import annotations

import tracemalloc

import pytest
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)

from lazarus_operator.jobseries import LABELS, Family, JobSeries

pytestmark = pytest.mark.unit
BUCKETS = (0.5, 1, 5)
RESTARTS = Family("t_restarts", "Restarts.", "counter", label="cause", values=("a", "b"))
PHASE = Family("t_phase", "Phase.", "gauge", label="phase", values=("Up", "Down"))
STEP = Family("t_step", "Step.", "gauge", optional=True)
SAVE = Family("t_save_seconds", "Saves.", "histogram", buckets=BUCKETS)
RECOVERY = Family("t_recovery", "Recovery.", "histogram", "cause", ("a", "b"), (1, 60))
FAMILIES = (RESTARTS, PHASE, STEP, SAVE, RECOVERY)


def _lines(reg: CollectorRegistry) -> list[str]:
    return sorted(generate_latest(reg).decode().splitlines())


def test_the_exposition_is_prometheus_clients_own() -> None:
    disable_created_metrics()  # type: ignore[no-untyped-call]  # as lazarus_operator.metrics
    ours_reg, ref_reg = CollectorRegistry(), CollectorRegistry()
    ours = JobSeries(FAMILIES, ours_reg)
    job = [*LABELS]
    ref_restarts = Counter("t_restarts", "Restarts.", [*job, "cause"], registry=ref_reg)
    ref_phase = Gauge("t_phase", "Phase.", [*job, "phase"], registry=ref_reg)
    ref_step = Gauge("t_step", "Step.", job, registry=ref_reg)
    ref_save = Histogram("t_save_seconds", "Saves.", job, buckets=BUCKETS, registry=ref_reg)
    ref_rec = Histogram(
        "t_recovery", "Recovery.", [*job, "cause"], buckets=(1, 60), registry=ref_reg
    )
    for k in ("j1", "j2", "j3"):
        key = ("ns", k)
        ours.touch(key)
        for c in ("a", "b"):
            ref_restarts.labels(*key, c)
            ref_rec.labels(*key, c)
        for p in ("Up", "Down"):
            ref_phase.labels(*key, p)
        ref_save.labels(*key)
    key = ("ns", "j1")
    ours.inc(key, RESTARTS, 2, "b")
    ref_restarts.labels(*key, "b").inc(2)
    ours.set(key, PHASE, 1, "Up")
    ref_phase.labels(*key, "Up").set(1)
    ours.set(key, STEP, 40)  # only j1 has a step: the others' series do not exist
    ref_step.labels(*key).set(40)
    for x in (0.5, 0.7, 5, 6, 0.1):  # a value on a bound lands in that bucket (le)
        ours.observe(key, SAVE, x)
        ref_save.labels(*key).observe(x)
    ours.observe(("ns", "j2"), RECOVERY, 61, "a")
    ref_rec.labels("ns", "j2", "a").observe(61)
    ours.forget(("ns", "j3"))
    for fam in (ref_restarts, ref_rec):
        for c in ("a", "b"):
            fam.remove("ns", "j3", c)
    ref_phase.remove("ns", "j3", "Up")
    ref_phase.remove("ns", "j3", "Down")
    ref_save.remove("ns", "j3")

    assert _lines(ours_reg) == _lines(ref_reg)
    assert ours_reg.get_sample_value("t_save_seconds_bucket", {**_l("j1"), "le": "0.5"}) == 2
    assert ours_reg.get_sample_value("t_step", _l("j2")) is None
    assert len(ours) == 2


def test_a_job_costs_a_few_kilobytes() -> None:
    ours = JobSeries(FAMILIES, CollectorRegistry())
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for i in range(200):
        ours.touch(("ns", f"job-{i:04d}"))
    per_job = (tracemalloc.get_traced_memory()[0] - before) / 200
    tracemalloc.stop()
    # 21 values: 168 bytes of floats, plus the array, its key and the dict's slot
    assert per_job < 600


def _l(job: str) -> dict[str, str]:
    return {"namespace": "ns", "trainingjob": job}
