"""The failure rate a job's automatic checkpoint interval is set from (docs/trainer.md).

Only ends a save could have helped count: crashes, OOM kills, lost nodes, and
disruptions that lost work (no save on SIGTERM). A disruption that saved on SIGTERM
lost nothing however often it comes, so it says nothing about how often to save.
Of those, only the ones that come from where a job runs (lost nodes, disruptions) are
`shared` with the namespace's other jobs: a neighbour's crashes and OOM kills are its
own code's and memory's, and say nothing about this job.

The estimate is the sum of two Gamma posterior means, each (a + n) / (b + t) with a
prior worth half of `PRIOR_WEIGHT` failures over `PRIOR_WEIGHT` prior MTBFs (a fresh job gets the
prior's rate, half from each part):
- the job's OWN rate (its crashes and OOM kills) from its own evidence only: n of them
  over its exposure t (seconds its attempts trained, from each one's first step:
  `job_exposure`);
- the SHARED rate (lost nodes, disruptions that lost work) from the job's own and the
  namespace's other jobs', the neighbours scaled to weigh at most `POOL_WEIGHT` failures,
  counted or expected at the prior's rate, so a busy or a long-quiet neighbour informs
  but cannot outvote.
Neighbours' exposure joins only the shared part: pooled with the job's own crashes, their
crash-free seconds would dilute the job's crash rate and stretch its interval.
So a quiet start sits near the prior and one burst moves the rate by its share of the
evidence only; the trainer clamps the interval besides (lazarus_contract.interval).
Pure: tables in tests/operator/test_failure_rate.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from statistics import median

from lazarus_contract import RESUME_AUTO

from .classify import Cause, parse_time
from .jobstatus import JobStatus
from .lostwork import AT_LEAST, AT_MOST
from .records import HistoryEntry

DEFAULT_PRIOR_MTBF_SECONDS = 24 * 3600.0
PRIOR_WEIGHT = 1.0  # the prior counts as one failure over one prior MTBF, half per part
POOL_WEIGHT = 3.0  # the namespace's other jobs weigh at most this many (prior) failures

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
    rate: float  # failures per second: own + shared
    source: str  # "job", "namespace" or "prior": whose evidence weighs most
    job: Exposure
    pool: Exposure  # the namespace's other jobs, before scaling
    own: float = 0.0  # of `rate`, the job's own crashes and OOM kills
    shared: float = 0.0  # of `rate`, lost nodes and disruptions (the pool's part)


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


def _resume_known(st: JobStatus) -> bool:
    """Whether the latest attempt's resume step is the operator's (not the trainer's
    own choice, unknown here: booking.book_lost's test)."""
    r = st.resumed_from
    return r is None or not (r.value == RESUME_AUTO and r.step < 0)


def _trained(h: HistoryEntry, nxt: HistoryEntry | None, st: JobStatus) -> int | None:
    """Steps ended attempt `h` took past its resume point: its last step is where its
    successor resumes plus what the successor booked as lost (or, while none is
    launched, the last step its trainers reported). None when unknown: a resume point
    the trainer chose (the loss is a bound), or nothing heard (a lost node, no own
    checkpoint)."""
    if h.resume_step is None:
        return None
    if nxt is not None:
        lost, bound = nxt.lost_steps, nxt.lost_bound
        if nxt.resume_step is None or lost is None or bound == AT_MOST:
            return None
        if bound == AT_LEAST and nxt.lost_estimated and not lost:
            return None  # lostwork's "unknown (0, at least)"
        last = max(nxt.resume_step, 0) + lost
    else:
        pending = st.pending_restart
        if pending is None or pending.attempt != h.attempt or pending.last_step is None:
            return None
        if not _resume_known(st):
            return None
        last = pending.last_step
    return max(0, last - max(h.resume_step, 0))


def _successor(history: list[HistoryEntry], i: int) -> HistoryEntry | None:
    if i + 1 >= len(history):
        return None
    h, nxt = history[i], history[i + 1]
    consecutive = h.attempt is None or nxt.attempt is None or nxt.attempt == h.attempt + 1
    return nxt if consecutive else None


def _running_seconds(st: JobStatus, now: datetime, pace: float | None, startup: float) -> float:
    """Training seconds of the attempt running now: from its newest checkpoint's step
    and commit when it has one (steps at the trainer's pace, then the time since),
    else its time since launch less the job's typical start-up."""
    ended = any(h.ended_at is not None for h in st.history_of(st.attempt)) if st.attempt else False
    if st.pending_restart is not None or ended:
        return 0.0
    wall = _seconds(st.attempt_started_at, now)
    ck = st.latest_checkpoint
    if pace and ck and ck.attempt == st.attempt and ck.step is not None and _resume_known(st):
        since = parse_time(ck.time) if ck.time else None
        if since is not None:
            steps = max(0, ck.step - max(st.resume_point_step(), 0))
            return min(wall, steps / pace + max(0.0, (now - since).total_seconds()))
    return max(0.0, wall - startup)


def job_exposure(st: JobStatus, now: datetime) -> Exposure:
    """Failures a save could have helped and the seconds the job trained, over its
    (bounded) history and the attempt running now.

    Exposure counts from each attempt's first step: the steps it took at the trainer's
    own pace (`status.stepRate`, measured from the end of a first step), so its
    start-up (pod start, imports, the resume's load) is left out; failures strike only
    what trains, and a job that restarts often would otherwise show a rate per wall
    second well below the one its training sees. Where the steps are unknown, the
    attempt's wall time less the job's median start-up (wall less trained time, over
    the attempts where both are known; 0 before one is). An attempt that took no step
    past its resume point lost nothing a save could have kept: its end does not count."""
    pace = st.step_rate if st.step_rate is not None and st.step_rate > 0 else None
    history = st.history or []
    # (entry, its wall seconds, the steps it trained or None, its successor)
    ended: list[tuple[HistoryEntry, float, int | None, HistoryEntry | None]] = []
    for i, h in enumerate(history):
        if h.ended_at is not None:
            nxt = _successor(history, i)
            ended.append((h, _seconds(h.started_at, h.ended_at), _trained(h, nxt, st), nxt))
    starts = [w - k / pace for _, w, k, _ in ended if pace and k and k / pace <= w]
    startup = median(starts) if starts else 0.0
    total = Exposure(0.0, _running_seconds(st, now, pace, startup))
    for h, wall, steps, nxt in ended:
        if steps is not None and pace is not None:
            seconds = min(wall, steps / pace)
        else:
            seconds = max(0.0, wall - startup)
        lost = nxt.lost_steps if nxt is not None else None
        hit = 1.0 if counts(h.cause, lost) and steps != 0 else 0.0
        shared = hit if h.cause not in OWN else 0.0
        total = total + Exposure(hit, seconds, shared)
    return total


def capped(pool: Exposure, prior_mtbf: float) -> Exposure:
    """`pool` scaled to weigh at most `POOL_WEIGHT` failures: its shared failures, or as
    many as its seconds would expect at the prior's rate, whichever is more (a quiet
    pool's seconds are evidence too, and as able to outvote the job's)."""
    weight = max(pool.shared, pool.seconds / prior_mtbf)
    return pool.scaled(POOL_WEIGHT / weight) if weight > POOL_WEIGHT else pool


def estimate(
    job: Exposure, pool: Exposure, prior_mtbf: float = DEFAULT_PRIOR_MTBF_SECONDS
) -> Estimate:
    """The job's own rate (its evidence) plus the shared rate (its and its neighbours')."""
    if prior_mtbf <= 0:
        raise ValueError(f"the prior MTBF must be > 0 seconds, got {prior_mtbf}")
    half = Exposure(PRIOR_WEIGHT / 2, PRIOR_WEIGHT * prior_mtbf)
    pooled = capped(pool, prior_mtbf)
    own = half + Exposure(job.failures - job.shared, job.seconds)
    shared = half + Exposure(job.shared + pooled.shared, job.seconds + pooled.seconds)
    own_rate, shared_rate = own.failures / own.seconds, shared.failures / shared.seconds
    weights = {"prior": half.seconds, "namespace": pooled.seconds, "job": job.seconds}
    source = max(weights, key=lambda k: weights[k])
    return Estimate(own_rate + shared_rate, source, job, pool, own_rate, shared_rate)


@dataclass
class Pool:
    """Each namespace's jobs' exposures, as the operator last computed them (in memory:
    rebuilt as it sees each job again after a restart of its own)."""

    jobs: dict[str, dict[str, Exposure]] = field(default_factory=dict)

    def record(self, namespace: str, uid: str, exposure: Exposure) -> None:
        """Keep what a job's neighbours learn from `exposure` (its shared failures)."""
        self.jobs.setdefault(namespace, {})[uid] = exposure.for_neighbours()

    def forget(self, namespace: str, uid: str) -> None:
        """A deleted job (its namespace's entry goes with its last job)."""
        held = self.jobs.get(namespace, {})
        held.pop(uid, None)
        if not held:
            self.jobs.pop(namespace, None)

    def others(self, namespace: str, uid: str) -> Exposure:
        total = Exposure()
        for other, e in self.jobs.get(namespace, {}).items():
            if other != uid:
                total = total + e
        return total
