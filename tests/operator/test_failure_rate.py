"""The failure-rate estimator as tables: which ends count, a job's exposure from its
history, the Gamma posterior with the namespace pooled in, and the pool itself."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from lazarus_contract import RESUME_AUTO
from lazarus_operator.failure_rate import (
    DEFAULT_PRIOR_MTBF_SECONDS,
    POOL_WEIGHT,
    Exposure,
    Pool,
    counts,
    estimate,
    job_exposure,
)
from lazarus_operator.jobstatus import JobStatus
from lazarus_operator.lostwork import AT_LEAST, AT_MOST
from lazarus_operator.records import HistoryEntry, LatestCheckpoint, PendingRestart, ResumedFrom

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


def entry(
    start: str,
    end: str | None,
    cause: str | None,
    lost: int | None = None,
    *,
    attempt: int | None = None,
    resume: int | None = None,
    bound: str | None = None,
) -> HistoryEntry:
    return HistoryEntry(
        attempt=attempt,
        started_at=start,
        ended_at=end,
        cause=cause,
        lost_steps=lost,
        resume_step=resume,
        lost_bound=bound,
        lost_estimated=bound == AT_LEAST or None,
    )


def t(minutes: float) -> str:
    """A time `minutes` after 08:00 (NOW is 12:00, 240 minutes on)."""
    return (NOW - timedelta(minutes=240 - minutes)).strftime("%Y-%m-%dT%H:%M:%SZ")


def job(history: list[HistoryEntry], running_since: str | None, **kw: Any) -> JobStatus:
    attempt = max((h.attempt or 0 for h in history), default=0)
    return JobStatus(attempt=attempt, attempt_started_at=running_since, history=history, **kw)


def test_job_exposure_without_a_pace_counts_wall_time_and_helped_failures() -> None:
    # No step rate known (no checkpoint with the trainer's pace): attempts' wall time.
    history = [
        entry(t(0), t(60), "Failed"),  # 1 h, counts
        entry(t(60), t(150), "Disrupted"),  # 1.5 h
        entry(t(150), t(180), "NodeLost", 0),  # 0.5 h, counts; its predecessor lost 0
        entry(t(180), None, None),  # the running attempt
    ]
    got = job_exposure(job(history, t(180)), NOW)
    assert got == Exposure(2.0, 4 * HOUR, shared=1.0)  # the lost node is shared, the crash not


def test_a_disruption_counts_by_what_its_successor_booked_lost() -> None:
    # Launch books an ended attempt's loss on the next attempt's entry; an entry's own
    # lostSteps is its predecessor's.
    def disrupted(own: int, successor: int) -> float:
        history = [entry(t(0), t(60), "Disrupted", own), entry(t(60), None, None, successor)]
        return job_exposure(job(history, t(60)), NOW).failures

    assert disrupted(0, 12) == 1  # lost 12 steps: no save on SIGTERM
    assert disrupted(7, 0) == 0  # saved on SIGTERM; the 7 were its predecessor's
    # no successor yet: what it lost is not booked, so it does not count yet
    alone = [entry(t(0), t(60), "Disrupted", 7)]
    assert job_exposure(job(alone, None), NOW).failures == 0


@pytest.mark.parametrize(
    ("startup", "training", "pace"),
    [
        (9.0, 1.0, 2.0),  # start-up nine times the training: a crash loop's shape
        (1.0, 9.0, 0.5),
        (0.0, 5.0, 1.0),  # no start-up: training time is the wall time
    ],
)
def test_exposure_counts_training_seconds_not_start_up(
    startup: float, training: float, pace: float
) -> None:
    """Five crashes, each after `training` minutes that followed `startup` minutes of
    start-up: the rate is five per 5 x `training` minutes, plus the running attempt's
    training (started 60 minutes before NOW: its newest checkpoint, 30 steps past its
    resume point, committed 10 minutes ago)."""
    history = [
        entry(t(i * 30), t(i * 30 + startup + training), "Failed", attempt=i + 1) for i in range(5)
    ]
    steps = round(training * 60 * pace)
    resume = -1
    for i, h in enumerate(history):
        h.resume_step = resume
        h.lost_steps = 10 if i else 0
        resume = max(resume, 0) + steps - 10
    running = entry(t(180), None, None, 10, attempt=6, resume=resume)
    ck = LatestCheckpoint("c", None, resume + 30, 6, t(230))
    st = job(
        [*history, running],
        t(180),
        step_rate=pace,
        latest_checkpoint=ck,
        resumed_from=ResumedFrom("c0", "c0", resume),
    )
    got = job_exposure(st, NOW)
    assert got.failures == 5
    assert got.seconds == pytest.approx(5 * training * 60 + 30 / pace + 600)
    rate = estimate(got, Exposure(), prior_mtbf=HOUR).rate
    assert rate == pytest.approx(6 / (HOUR + 5 * training * 60 + 30 / pace + 600))


def test_unknown_steps_count_wall_time_less_the_median_start_up() -> None:
    # Two attempts with known steps (start-ups 20 and 30 min), one node lost with nothing
    # heard (its successor's loss: unknown, at least 0), and one running with no
    # checkpoint of its own: both count their wall time less the 25-minute median.
    history = [
        entry(t(0), t(30), "Failed", attempt=1, resume=-1),  # 600 steps at 1/s: 10 min
        entry(t(30), t(90), "Failed", 100, attempt=2, resume=500),  # 30 min steps
        entry(t(90), t(150), "NodeLost", 100, attempt=3, resume=2200),  # 2 trained to 2300
        entry(t(150), None, None, 0, attempt=4, resume=2200, bound=AT_LEAST),
    ]
    st = job(history, t(150), step_rate=1.0)
    got = job_exposure(st, NOW)
    # 10 + 30 + (60 - 25) + (90 - 25) minutes; all three failures count
    assert got == Exposure(3.0, (10 + 30 + 35 + 65) * 60, shared=1.0)


def test_an_attempt_that_took_no_step_does_not_count() -> None:
    # It crashed in its start-up (its trainer reported no step: nothing lost past the
    # resume point, which the next attempt resumes from again): no save could help.
    history = [
        entry(t(0), t(30), "Failed", attempt=1, resume=100),
        entry(t(30), None, None, 0, attempt=2, resume=100),
    ]
    st = job(history, t(30), step_rate=1.0)
    assert job_exposure(st, NOW).failures == 0
    # the same while its successor is not launched: the trainers reported no step (-1)
    pending = job(history[:1], t(0), step_rate=1.0, resumed_from=ResumedFrom("c", "c", 100))
    pending.pending_restart = PendingRestart(1, "Failed", t(30), None, -1)
    assert job_exposure(pending, NOW) == Exposure(0.0, 0.0)
    pending.pending_restart = PendingRestart(1, "Failed", t(30), None, 160)
    assert job_exposure(pending, NOW) == Exposure(1.0, 60.0)  # 60 steps at 1/s


def test_a_resume_point_the_trainer_chose_falls_back_to_wall_time() -> None:
    # The trainer selects its checkpoint (a filesystem root): the losses are upper
    # bounds, so the steps an attempt trained are unknown.
    history = [
        entry(t(0), t(60), "Failed", attempt=1, resume=-1),
        entry(t(60), None, None, 900, attempt=2, resume=-1, bound=AT_MOST),
    ]
    st = job(history, t(60), step_rate=1.0, resumed_from=ResumedFrom(RESUME_AUTO))
    assert job_exposure(st, NOW) == Exposure(1.0, 4 * HOUR)


def test_job_exposure_skips_unknown_times() -> None:
    history = [
        entry("not a time", t(60), "Failed"),
        HistoryEntry(ended_at=t(60), cause="OOMKilled"),
    ]
    assert job_exposure(job(history, "not a time either"), NOW) == Exposure(2.0, 0.0, 0.0)


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
    # neighbours: 100 lost nodes in 100 h (MTBF 1 h), worth POOL_WEIGHT failures
    pool = Exposure(100, 100 * HOUR, shared=100)
    e = estimate(Exposure(), pool, prior_mtbf=24 * HOUR)
    k = POOL_WEIGHT / 100
    own, shared = 0.5 / (24 * HOUR), (0.5 + 100 * k) / (24 * HOUR + 100 * HOUR * k)
    assert e.own == pytest.approx(own) and e.shared == pytest.approx(shared)
    assert e.rate == pytest.approx(own + shared)
    assert e.source == "prior"  # 24 h of prior against 3 h of scaled pool
    young = estimate(Exposure(), pool, prior_mtbf=1 * HOUR)
    assert young.source == "namespace"
    # the job's own evidence outweighs the capped pool once it has some
    mine = estimate(Exposure(20, 200 * HOUR), pool, prior_mtbf=1 * HOUR)
    assert mine.source == "job" and 1 / mine.rate > 8 * HOUR


M = 30.0  # a prior MTBF of 30 s (bench/goodput_auto.py's)


@pytest.mark.parametrize(
    ("job_", "pool", "own", "shared"),
    [
        # 2 crashes in 22 s beside 122 s of crash-free neighbours (a goodput_auto run): the
        # neighbours' seconds leave the crash rate alone; the shared part takes them,
        # capped at 3 prior MTBFs (90 s)
        (Exposure(2, 22), Exposure(0, 122), 2.5 / (M + 22), 0.5 / (M + 22 + 90)),
        # neighbours within the cap count whole, and only in the shared part
        (Exposure(2, 22), Exposure(0, 40), 2.5 / (M + 22), 0.5 / (M + 22 + 40)),
        # the job's own lost node is shared, its crash is its own
        (Exposure(2, 60, shared=1), Exposure(), 1.5 / (M + 60), 1.5 / (M + 60)),
        # neighbours' lost nodes (6 in 60 s, scaled to 3 in 30 s) raise the shared part only
        (Exposure(1, 30), Exposure(6, 60, 6), 1.5 / (M + 30), 3.5 / (M + 30 + 30)),
        # a long-quiet namespace (100 prior MTBFs, no failure) weighs 3 prior MTBFs
        (Exposure(), Exposure(0, 100 * M), 0.5 / M, 0.5 / (4 * M)),
    ],
)
def test_own_and_shared_rates_add_and_neighbours_inform_only_the_shared(
    job_: Exposure, pool: Exposure, own: float, shared: float
) -> None:
    e = estimate(job_, pool, prior_mtbf=M)
    assert e.own == pytest.approx(own) and e.shared == pytest.approx(shared)
    assert e.rate == pytest.approx(own + shared)
    # however much crash-free exposure the neighbours have, the job's own crash rate
    # stands: the estimate never falls below it
    alone = estimate(Exposure(job_.failures - job_.shared, job_.seconds), Exposure(), M)
    assert e.rate >= alone.own


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
    pool.forget("a", "u1")
    pool.forget("a", "u4")
    assert "a" not in pool.jobs and "b" in pool.jobs  # nothing kept of a namespace's last job
