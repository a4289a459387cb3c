"""The failure rate a job's automatic checkpoint interval is set from (docs/trainer.md).

Only ends a save could have helped count: crashes, OOM kills, lost nodes, and
disruptions that lost work (no save on SIGTERM). A disruption that saved on SIGTERM
lost nothing however often it comes, so it says nothing about how often to save.
Of those, only the ones that come from where a job runs (lost nodes, disruptions) are
`shared` with the namespace's other jobs: a neighbour's crashes and OOM kills are its
own code's and memory's, and say nothing about this job.

The estimate is a Gamma posterior mean, rate = (a + n) / (b + t): a prior worth
`weight` failures over `weight` prior MTBFs, then the namespace's other jobs (scaled to
at most `POOL_WEIGHT` failures, so a busy neighbour informs but cannot outvote), then
this job's own failures n over its exposure t (seconds attempts ran) at full weight.
So a quiet start sits near the prior and one burst moves the rate by its share of the
evidence only; the trainer clamps the interval besides (lazarus_contract.interval).
Pure: tables in tests/operator/test_failure_rate.py.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from .classify import Cause, parse_time
from .records import HistoryEntry

DEFAULT_PRIOR_MTBF_SECONDS = 24 * 3600.0
PRIOR_WEIGHT = 1.0  # the prior counts as one failure over one prior MTBF
POOL_WEIGHT = 3.0  # the namespace's other jobs count as at most this many failures

# Causes of an end a save could have helped; Disrupted only when it lost work.
HELPED = frozenset({str(Cause.FAILED), str(Cause.OOM_KILLED), str(Cause.NODE_LOST)})
OWN = frozenset({str(Cause.FAILED), str(Cause.OOM_KILLED)})  # the job's own, not shared


@dataclass(frozen=True)
class Exposure:
    failures: float = 0.0
    seconds: float = 0.0
    shared: float = 0.0  # of `failures`, those from where the job runs (node, disruption)

    def __add__(self, other: Exposure) -> Exposure:
        return Exposure(
            self.failures + other.failures, self.seconds + other.seconds, self.shared + other.shared
        )

    def scaled(self, k: float) -> Exposure:
        return Exposure(self.failures * k, self.seconds * k, self.shared * k)

    def for_neighbours(self) -> Exposure:
        """What the namespace's other jobs learn from this one: its shared failures."""
        return Exposure(self.shared, self.seconds, self.shared)


@dataclass(frozen=True)
class Estimate:
    rate: float  # failures per second
    source: str  # "job", "namespace" or "prior": whose evidence weighs most
    job: Exposure
    pool: Exposure  # the namespace's other jobs, before scaling


def counts(cause: str | None, lost_steps: int | None) -> bool:
    """Whether an attempt's end is a failure a more frequent save would have helped."""
    if cause in HELPED:
        return True
    # A disruption without a save on SIGTERM lost work; one that saved lost none.
    return cause == str(Cause.DISRUPTED) and lost_steps is not None and lost_steps > 0


def _seconds(start: str | None, end: str | datetime | None) -> float:
    """Seconds from `start` to `end`; 0 when either is missing or unreadable."""
    try:
        a, b = parse_time(start), parse_time(end)
    except ValueError:
        return 0.0
    return max(0.0, (b - a).total_seconds()) if a is not None and b is not None else 0.0


def job_exposure(
    history: Iterable[HistoryEntry], running_since: str | None, now: datetime
) -> Exposure:
    """Failures and running seconds in the job's (bounded) history, plus the attempt
    running now (`running_since`, None when none runs)."""
    total = Exposure(0.0, _seconds(running_since, now))
    for h in history:
        if h.ended_at is None:
            continue  # the running attempt: counted from running_since
        hit = 1.0 if counts(h.cause, h.lost_steps) else 0.0
        shared = hit if h.cause not in OWN else 0.0
        total = total + Exposure(hit, _seconds(h.started_at, h.ended_at), shared)
    return total


def estimate(
    job: Exposure, pool: Exposure, prior_mtbf: float = DEFAULT_PRIOR_MTBF_SECONDS
) -> Estimate:
    """The posterior mean rate from the prior, the pooled neighbours and the job."""
    if prior_mtbf <= 0:
        raise ValueError(f"the prior MTBF must be > 0 seconds, got {prior_mtbf}")
    prior = Exposure(PRIOR_WEIGHT, PRIOR_WEIGHT * prior_mtbf)
    pooled = pool.scaled(min(1.0, POOL_WEIGHT / pool.failures)) if pool.failures > 0 else pool
    evidence = prior + pooled + job
    weights = {"prior": prior.seconds, "namespace": pooled.seconds, "job": job.seconds}
    source = max(weights, key=lambda k: weights[k])
    return Estimate(evidence.failures / evidence.seconds, source, job, pool)


@dataclass
class Pool:
    """Each namespace's jobs' exposures, as the operator last computed them (in memory:
    rebuilt as it sees each job again after a restart of its own)."""

    jobs: dict[str, dict[str, Exposure]] = field(default_factory=dict)

    def record(self, namespace: str, uid: str, exposure: Exposure) -> None:
        """Keep what a job's neighbours learn from `exposure` (its shared failures)."""
        self.jobs.setdefault(namespace, {})[uid] = exposure.for_neighbours()

    def forget(self, namespace: str, uid: str) -> None:
        self.jobs.get(namespace, {}).pop(uid, None)

    def others(self, namespace: str, uid: str) -> Exposure:
        total = Exposure()
        for other, e in self.jobs.get(namespace, {}).items():
            if other != uid:
                total = total + e
        return total
