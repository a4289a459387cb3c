"""Prometheus metrics of the operator and of its jobs (docs/observability.md).

Labels are bounded: `namespace`, `trainingjob` (the TrainingJob's name; not `job`,
which Prometheus sets on every target), `cause`, `state`, `phase`; never pods or
steps. A job has at most 15 series; distributions and lost work by cause are kept
per namespace (`metricfamilies`). Job metrics follow status transitions through the
pure `accounting` module; the trainer's save and resume timings come from the
manifest of the newest checkpoint the operator selects (contract section 4a).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from importlib.metadata import PackageNotFoundError, version
from typing import Any, Final

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    disable_created_metrics,
)
from prometheus_client import start_http_server as _start_http_server

from lazarus_contract import timings

from . import accounting as acc
from . import status as s
from .builders import JobRef
from .classify import parse_time
from .jobseries import UNSET, JobSeries
from .metricfamilies import job_families, namespace_families
from .spec import CheckpointSpec
from .transition import Transition

CYCLE_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
KEEP_FINISHED_SECONDS: Final = 3600.0  # a finished job's series, then they go

# `_created` series double every counter and no dashboard or alert reads them.
disable_created_metrics()  # type: ignore[no-untyped-call]


def _version() -> str:
    try:
        return version("lazarus")
    except PackageNotFoundError:
        return "unknown"


def _storage_clients_built() -> float:
    from lazarus_store.backends.s3_client import clients_built  # boto3 only when scraped

    return float(clients_built())


def save_interval(ck: CheckpointSpec | None, step_rate: Any, auto: Any = None) -> float | None:
    """The job's save interval in seconds: `everySeconds`, or `everySteps` at the
    trainer's step rate, whichever comes sooner; None while neither is known. With
    `save.auto`, the interval the trainer chose (`auto`: status.saveInterval)."""
    if ck is None:
        return None
    if ck.save_auto.enabled:
        chosen = auto.get("intervalSeconds") if isinstance(auto, Mapping) else None
        if isinstance(chosen, bool) or not isinstance(chosen, int | float):
            return None
        return float(chosen)
    every: list[float] = []
    if ck.save_every_seconds > 0:
        every.append(float(ck.save_every_seconds))
    rate = step_rate if isinstance(step_rate, int | float) else 0.0
    if ck.save_every_steps > 0 and rate > 0:
        every.append(ck.save_every_steps / rate)
    return min(every, default=None)


def finished_at(status: Mapping[str, Any], now: datetime) -> float | None:
    """When a finished job finished (`status.finishedAt`, else `now`); None if running."""
    if status.get("phase") not in s.FINISHED:
        return None
    t = parse_time(status.get("finishedAt")) or now
    return t.timestamp()


def _operator(r: CollectorRegistry) -> tuple[Histogram, Counter, Counter]:
    """The operator's own families; returns those the cycle records."""
    Info("lazarus_operator", "The operator build.", registry=r).info({"version": _version()})
    Gauge(
        "lazarus_operator_storage_clients",
        "S3 clients this process has built: one per endpoint and credentials, "
        "shared by every job's store.",
        registry=r,
    ).set_function(_storage_clients_built)
    return (
        Histogram(
            "lazarus_operator_cycle_duration_seconds",
            "Duration of one reconcile cycle of one job.",
            buckets=CYCLE_BUCKETS,
            registry=r,
        ),
        Counter("lazarus_operator_cycle_errors", "Reconcile cycles that raised.", registry=r),
        Counter(
            "lazarus_operator_api_retries",
            "API writes retried: status patch conflicts, decided again on fresh facts.",
            registry=r,
        ),
    )


class Metrics:
    """The operator's own metric families, every job's and every namespace's series
    (`JobSeries`: one array of floats each), and each job's accounting clock.
    A finished job's series go `keep_finished` seconds after it finished (`clock`)."""

    def __init__(
        self,
        registry: CollectorRegistry = REGISTRY,
        *,
        keep_finished: float = KEEP_FINISHED_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.keep_finished = keep_finished
        self.job_fams, self.ns_fams = job_families(), namespace_families()
        self.jobs = JobSeries(self.job_fams, registry, clock=clock)
        self.namespaces = JobSeries(self.ns_fams, registry, labels=("namespace",), clock=clock)
        self.cycle, self.cycle_errors, self.api_retries = _operator(registry)
        self._clocks: dict[tuple[str, str], acc.Clock] = {}
        self._seen_ckpt: dict[tuple[str, str], str] = {}
        self._seen_resume: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()

    # --- job transitions ------------------------------------------------------------
    def observe(self, t: Transition, checkpoint: CheckpointSpec | None = None) -> None:
        """Record one cycle's status transition (called after the status write);
        `checkpoint`: the job's spec.checkpoint, for its save interval."""
        job, old, new, now = t.job, t.old.to_api(), t.written, t.now
        key = (job.namespace, job.name)
        with self._lock:
            clock, o = acc.account(self._clocks.get(key), t)
            self._clocks[key] = clock
        self._namespace((job.namespace,), old, new, o)
        done = finished_at(new, now)
        if self.jobs.expire(key, None if done is None else done + self.keep_finished):
            every = save_interval(checkpoint, new.get("stepRate"), new.get("saveInterval"))
            self._job(key, new, o, every)

    def _job(
        self, key: tuple[str, str], new: dict[str, Any], o: acc.Observations, every: float | None
    ) -> None:
        j, f = self.jobs, self.job_fams
        j.touch(key)  # every series exists from the job's first cycle, at 0: sums add up,
        # and increase() sees the first restart
        for state, secs in o.seconds.items():
            j.inc(key, f.seconds, secs, state)
        for cause, n in o.restarts.items():
            j.inc(key, f.restarts, n, cause)
        j.inc(key, f.lost_steps, sum(o.lost_steps.values()))
        for phase in acc.PHASES:
            j.set(key, f.phase, 1 if phase == o.phase else UNSET, phase)
        if o.checkpoint_step is not None:
            j.set(key, f.checkpoint_step, o.checkpoint_step)
        if o.checkpoint_time is not None:
            j.set(key, f.checkpoint_time, o.checkpoint_time)
        j.set(key, f.interval, UNSET if every is None else every)
        j.set(key, f.no_progress, o.failures_without_progress)

    def _namespace(
        self, ns: tuple[str], old: dict[str, Any], new: dict[str, Any], o: acc.Observations
    ) -> None:
        """Lifecycle and lost work of the namespace: only transitions this process
        writes count, so a restarted operator counts no job twice."""
        n, f = self.namespaces, self.ns_fams
        n.touch(ns)
        old_phase, new_phase = old.get("phase"), new.get("phase")
        if new_phase and not old_phase:
            n.inc(ns, f.created, 1)
        if new_phase != old_phase and old_phase not in s.FINISHED:
            if new_phase == s.SUCCEEDED:
                n.inc(ns, f.succeeded, 1)
            elif new_phase == s.FAILED:
                n.inc(ns, f.failed, 1)
        for cause, steps in o.lost_steps.items():
            n.inc(ns, f.lost_steps, steps, cause)
        for cause, secs in o.lost_seconds.items():
            n.inc(ns, f.lost_seconds, secs, cause)
        for cause, secs in o.recovered:
            n.observe(ns, f.recovery, secs, cause)
        if o.start_timeouts > 0:
            n.inc(ns, f.start_timeouts, o.start_timeouts)
        for cause, k in o.replacements.items():
            n.inc(ns, f.group_replacements, k, cause)
        if o.lighthouse_restarts > 0:
            n.inc(ns, f.lighthouse_restarts, o.lighthouse_restarts)

    def observe_checkpoint(self, job: JobRef, name: str, extra: Mapping[str, Any]) -> None:
        """The trainer's timings from a checkpoint manifest, once per checkpoint, into
        the namespace's distributions."""
        key, ns, f = (job.namespace, job.name), (job.namespace,), self.ns_fams
        t = timings.decode(extra)
        if self._seen_ckpt.get(key) == name:
            return
        self._seen_ckpt[key] = name
        for seconds, fam in (
            (t.save_seconds, f.save_seconds),
            (t.stall_seconds, f.stall_seconds),
            (t.durable_seconds, f.durable_seconds),
            (t.ft_stall_seconds, f.ft_stall_seconds),
            (t.ft_rejoin_seconds, f.ft_rejoin_seconds),
        ):
            if seconds is not None:
                self.namespaces.observe(ns, fam, seconds)
        if t.bytes is not None:
            self.namespaces.inc(ns, f.written_bytes, t.bytes)
        fresh = t.attempt is not None and self._seen_resume.get(key) != t.attempt
        if fresh and t.attempt is not None and t.resume_seconds is not None:
            self._seen_resume[key] = t.attempt
            self.namespaces.observe(ns, f.resume_seconds, t.resume_seconds)

    def forget(self, namespace: str, name: str) -> None:
        """A deleted job: drop its series and its clock (its namespace's stay)."""
        key = (namespace, name)
        with self._lock:
            self._clocks.pop(key, None)
        self._seen_ckpt.pop(key, None)
        self._seen_resume.pop(key, None)
        self.jobs.forget(key)


METRICS = Metrics()


def serve(port: int, addr: str = "0.0.0.0") -> None:
    """Serve /metrics on `port` in a thread (0: off). Fails loudly if the port is taken."""
    if port:
        _start_http_server(port, addr=addr)
