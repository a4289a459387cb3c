"""The failure-rate estimator as tables: which ends count, a job's exposure from its
history, the Gamma posterior with the namespace pooled in, and the pool itself."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from lazarus_operator.failure_rate import (
    DEFAULT_PRIOR_MTBF_SECONDS,
    POOL_WEIGHT,
    Exposure,
    Pool,
    counts,
    estimate,
    job_exposure,
)
from lazarus_operator.records import HistoryEntry

pytestmark = pytest.mark.unit

HOUR = 3600.0
NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("cause", "lost", "expected"),
    [
        ("Failed", None, True),  # counts for the job; not shared with its namespace
        ("OOMKilled", 3, True),
        ("NodeLost", 0, True),  # a save could have helped, though it lost nothing this time
        ("Disrupted", 12, True),  # no save on SIGTERM: work lost
        ("Disrupted", 0, False),  # saved on SIGTERM: nothing a save schedule could change
        ("Disrupted", None, False),
        ("PermanentError", 5, False),
        ("Succeeded", None, False),
        (None, None, False),
    ],
)
def test_counts(cause: str | None, lost: int | None, expected: bool) -> None:
    assert counts(cause, lost) is expected


def entry(start: str, end: str | None, cause: str | None, lost: int | None = None) -> HistoryEntry:
    return HistoryEntry(started_at=start, ended_at=end, cause=cause, lost_steps=lost)


def test_job_exposure_counts_running_time_and_helped_failures() -> None:
    history = [
        entry("2026-01-01T08:00:00Z", "2026-01-01T09:00:00Z", "Failed"),  # 1 h, counts
        entry("2026-01-01T09:00:00Z", "2026-01-01T10:30:00Z", "Disrupted", 0),  # 1.5 h
        entry("2026-01-01T10:30:00Z", "2026-01-01T11:00:00Z", "NodeLost"),  # 0.5 h, counts
        entry("2026-01-01T11:00:00Z", None, None),  # the running attempt
    ]
    got = job_exposure(history, "2026-01-01T11:00:00Z", NOW)
    assert got == Exposure(2.0, 4 * HOUR, shared=1.0)  # the lost node is shared, the crash not


def test_job_exposure_skips_unknown_times() -> None:
    history = [
        entry("not a time", "2026-01-01T09:00:00Z", "Failed"),
        HistoryEntry(ended_at="2026-01-01T09:00:00Z", cause="OOMKilled"),
    ]
    assert job_exposure(history, "not a time either", NOW) == Exposure(2.0, 0.0, 0.0)


def test_a_fresh_job_gets_the_prior() -> None:
    e = estimate(Exposure(), Exposure())
    assert e.rate == pytest.approx(1 / DEFAULT_PRIOR_MTBF_SECONDS) and e.source == "prior"


def test_the_job_dominates_once_it_has_run_long() -> None:
    # 30 failures in 300 h: MTBF 10 h; the prior (24 h, one failure) barely moves it
    e = estimate(Exposure(30, 300 * HOUR), Exposure(), prior_mtbf=24 * HOUR)
    assert e.rate == pytest.approx(31 / (324 * HOUR)) and e.source == "job"


def test_one_burst_moves_the_rate_by_its_share_only() -> None:
    # three failures in ten minutes of a fresh job: not a 3-per-10-minutes rate
    e = estimate(Exposure(3, 600), Exposure(), prior_mtbf=24 * HOUR)
    assert e.rate == pytest.approx(4 / (24 * HOUR + 600))
    assert 1 / e.rate > 5 * HOUR


def test_the_namespace_informs_a_young_job_but_is_capped() -> None:
    pool = Exposure(100, 100 * HOUR)  # neighbours: MTBF 1 h, worth POOL_WEIGHT failures
    e = estimate(Exposure(), pool, prior_mtbf=24 * HOUR)
    k = POOL_WEIGHT / 100
    assert e.rate == pytest.approx((1 + 100 * k) / (24 * HOUR + 100 * HOUR * k))
    assert e.source == "prior"  # 24 h of prior against 3 h of scaled pool
    young = estimate(Exposure(), pool, prior_mtbf=1 * HOUR)
    assert young.source == "namespace"
    # the job's own evidence outweighs the capped pool once it has some
    own = estimate(Exposure(20, 200 * HOUR), pool, prior_mtbf=1 * HOUR)
    assert own.source == "job" and 1 / own.rate > 8 * HOUR


def test_a_quiet_namespace_pool_is_kept_whole() -> None:
    e = estimate(Exposure(), Exposure(0, 48 * HOUR), prior_mtbf=24 * HOUR)
    assert e.rate == pytest.approx(1 / (72 * HOUR)) and e.source == "namespace"


def test_estimate_refuses_a_bad_prior() -> None:
    with pytest.raises(ValueError, match="prior MTBF must be > 0"):
        estimate(Exposure(), Exposure(), prior_mtbf=0)


def test_pool_sums_the_other_jobs_shared_failures() -> None:
    pool = Pool()
    pool.record("a", "u1", Exposure(1, 10, 1))
    pool.record("a", "u2", Exposure(2, 20, 2))
    pool.record("b", "u3", Exposure(5, 50, 5))
    pool.record("a", "u2", Exposure(3, 30, 3))  # the newer figure replaces the older
    assert pool.others("a", "u1") == Exposure(3, 30, 3)
    assert pool.others("a", "u2") == Exposure(1, 10, 1)
    # a neighbour's own crashes and OOM kills are not shared: only its exposure is
    pool.record("a", "u4", Exposure(7, 40, 0))
    assert pool.others("a", "u1") == Exposure(3, 70, 3)
    assert pool.others("c", "u9") == Exposure()
    pool.forget("a", "u2")
    assert pool.others("a", "u1") == Exposure(0, 40, 0)
