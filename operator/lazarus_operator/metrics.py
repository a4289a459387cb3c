"""Prometheus metrics of the operator and of its jobs (docs/observability.md).

Labels are bounded: `namespace`, `trainingjob` (the TrainingJob's name; not `job`,
which Prometheus sets on every target), `cause`, `state`, `phase`; never pods or
steps. Job metrics follow status transitions through the pure `accounting`
module; the trainer's save and resume timings come from the manifest of the
newest checkpoint the operator selects (contract section 4a).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
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

from . import accounting as acc
from .builders import JobRef
from .jobseries import Family, JobSeries
from .vocabulary import trainer_timings

JOB: Final = ("namespace", "trainingjob")
CAUSE: Final = (*JOB, "cause")
SECONDS_BUCKETS: Final = (1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800, 3600)
SAVE_BUCKETS: Final = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300)
CYCLE_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)

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


def _job_families() -> tuple[Family, ...]:
    def trainer_hist(name: str, doc: str) -> Family:
        return Family(name, doc, "histogram", buckets=SAVE_BUCKETS)

    return (
        Family(
            "lazarus_restarts",
            "Attempts of a job ended and relaunched, by cause.",
            "counter",
            label="cause",
            values=acc.CAUSES,
        ),
        Family(
            "lazarus_recovery_seconds",
            "Time from an attempt's end until all pods of the next attempt run.",
            "histogram",
            buckets=SECONDS_BUCKETS,
            label="cause",
            values=acc.CAUSES,
        ),
        Family(
            "lazarus_lost_steps",
            "Steps lost by restarts (last step - resume step).",
            "counter",
            label="cause",
            values=acc.CAUSES,
        ),
        Family(
            "lazarus_lost_seconds",
            "Running time lost by restarts (after the checkpoint resumed from).",
            "counter",
            label="cause",
            values=acc.CAUSES,
        ),
        Family(
            "lazarus_job_seconds",
            "Job wall-clock seconds by state; goodput = productive / all states.",
            "counter",
            label="state",
            values=acc.STATES,
        ),
        Family(
            "lazarus_job_phase",
            "1 for the job's current phase.",
            "gauge",
            label="phase",
            values=acc.PHASES,
        ),
        Family(
            "lazarus_checkpoint_step",
            "Step of the newest valid checkpoint.",
            "gauge",
            optional=True,
        ),
        Family(
            "lazarus_checkpoint_timestamp_seconds",
            "Commit time of the newest valid checkpoint (unix seconds).",
            "gauge",
            optional=True,
        ),
        Family(
            "lazarus_failures_without_progress",
            "Consecutive failures without a new checkpoint.",
            "gauge",
        ),
        trainer_hist(
            "lazarus_checkpoint_save_seconds", "Trainer: save from state capture to commit start."
        ),
        trainer_hist(
            "lazarus_checkpoint_stall_seconds", "Trainer: training paused per save (state copy)."
        ),
        trainer_hist(
            "lazarus_checkpoint_durable_seconds",
            "Trainer: a step's state captured until committed.",
        ),
        trainer_hist(
            "lazarus_resume_seconds", "Trainer: loading the resume checkpoint, per attempt."
        ),
        Family(
            "lazarus_checkpoint_written_bytes",
            "Trainer: bytes of committed checkpoints.",
            "counter",
        ),
    )


class Metrics:
    """The operator's own metric families, every job's series (`JobSeries`: one
    array of floats a job), and each job's accounting clock."""

    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        r = registry
        (
            self.restarts,
            self.recovery,
            self.lost_steps,
            self.lost_seconds,
            self.job_seconds,
            self.phase,
            self.checkpoint_step,
            self.checkpoint_time,
            self.no_progress,
            self.save_seconds,
            self.stall_seconds,
            self.durable_seconds,
            self.resume_seconds,
            self.written_bytes,
        ) = families = _job_families()
        self.jobs = JobSeries(families, r)
        self.cycle = Histogram(
            "lazarus_operator_cycle_duration_seconds",
            "Duration of one reconcile cycle of one job.",
            buckets=CYCLE_BUCKETS,
            registry=r,
        )
        self.cycle_errors = Counter(
            "lazarus_operator_cycle_errors", "Reconcile cycles that raised.", registry=r
        )
        self.api_retries = Counter(
            "lazarus_operator_api_retries",
            "API writes retried: status patch conflicts, decided again on fresh facts.",
            registry=r,
        )
        Info("lazarus_operator", "The operator build.", registry=r).info({"version": _version()})
        self.storage_clients = Gauge(
            "lazarus_operator_storage_clients",
            "S3 clients this process has built: one per endpoint and credentials, "
            "shared by every job's store.",
            registry=r,
        )
        self.storage_clients.set_function(_storage_clients_built)
        self._clocks: dict[tuple[str, str], acc.Clock] = {}
        self._seen_ckpt: dict[tuple[str, str], str] = {}
        self._seen_resume: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()

    # --- job transitions ------------------------------------------------------------
    def observe(self, job: JobRef, old: dict[str, Any], new: dict[str, Any], now: datetime) -> None:
        """Record one cycle's status transition (called after the status write)."""
        key = (job.namespace, job.name)
        with self._lock:
            clock, o = acc.account(self._clocks.get(key), old, new, now)
            self._clocks[key] = clock
        j = self.jobs
        j.touch(key)  # every series exists from the job's first cycle, at 0: sums add up,
        # and increase() sees the first restart
        for state, secs in o.seconds.items():
            j.inc(key, self.job_seconds, secs, state)
        for cause in acc.CAUSES:
            j.inc(key, self.restarts, o.restarts.get(cause, 0), cause)
            j.inc(key, self.lost_steps, o.lost_steps.get(cause, 0), cause)
            j.inc(key, self.lost_seconds, o.lost_seconds.get(cause, 0.0), cause)
        for cause, secs in o.recovered:
            j.observe(key, self.recovery, secs, cause)
        for phase in acc.PHASES:
            j.set(key, self.phase, 1 if phase == o.phase else 0, phase)
        if o.checkpoint_step is not None:
            j.set(key, self.checkpoint_step, o.checkpoint_step)
        if o.checkpoint_time is not None:
            j.set(key, self.checkpoint_time, o.checkpoint_time)
        j.set(key, self.no_progress, o.failures_without_progress)

    def observe_checkpoint(self, job: JobRef, name: str, extra: Mapping[str, Any]) -> None:
        """The trainer's timings from a checkpoint manifest, once per checkpoint."""
        key = (job.namespace, job.name)
        t = trainer_timings(extra)
        if self._seen_ckpt.get(key) == name:
            return
        self._seen_ckpt[key] = name
        for field, fam in (
            ("saveSeconds", self.save_seconds),
            ("stallSeconds", self.stall_seconds),
            ("durableSeconds", self.durable_seconds),
        ):
            if isinstance(t.get(field), int | float):
                self.jobs.observe(key, fam, float(t[field]))
        if isinstance(t.get("bytes"), int):
            self.jobs.inc(key, self.written_bytes, t["bytes"])
        attempt = t.get("attempt")
        resume = t.get("resumeSeconds")
        fresh = isinstance(attempt, int) and self._seen_resume.get(key) != attempt
        if fresh and isinstance(attempt, int) and isinstance(resume, int | float):
            self._seen_resume[key] = attempt
            self.jobs.observe(key, self.resume_seconds, float(resume))

    def forget(self, namespace: str, name: str) -> None:
        """A deleted job: drop its series and its clock."""
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
