"""The metric families of jobs and of namespaces (docs/observability.md, "Metrics").

Per job only what a per-job panel or alert reads, at most 15 series a job; the
distributions and lost work by cause per namespace, where they also outlive the
jobs. Every family with a label has a fixed set of values, so the count is bounded.
"""

from __future__ import annotations

from typing import Final, NamedTuple

from . import accounting as acc
from .jobseries import Family

SECONDS_BUCKETS: Final = (1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800, 3600)
# Around the targets (a stall <= 2 s, a replacement <= 10 s).
FT_BUCKETS: Final = (0.25, 0.5, 1, 1.5, 2, 3, 5, 10, 20, 30, 60, 120)
SAVE_BUCKETS: Final = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300)


class JobFamilies(NamedTuple):
    phase: Family
    restarts: Family
    seconds: Family
    lost_steps: Family
    checkpoint_step: Family
    checkpoint_time: Family
    interval: Family
    no_progress: Family


class NamespaceFamilies(NamedTuple):
    created: Family
    succeeded: Family
    failed: Family
    lost_steps: Family
    lost_seconds: Family
    recovery: Family
    save_seconds: Family
    stall_seconds: Family
    durable_seconds: Family
    resume_seconds: Family
    written_bytes: Family
    start_timeouts: Family
    group_replacements: Family
    lighthouse_restarts: Family
    ft_stall_seconds: Family
    ft_rejoin_seconds: Family


def _by_cause(name: str, doc: str) -> Family:
    return Family(name, doc, "counter", label="cause", values=acc.CAUSES)


def _gauge(name: str, doc: str) -> Family:
    return Family(name, doc, "gauge", optional=True)


def job_families() -> JobFamilies:
    return JobFamilies(
        # optional: only the current phase's series is exposed (1), not five zeros
        Family(
            "lazarus_job_phase",
            "1 for the job's current phase (the other phases have no series).",
            "gauge",
            label="phase",
            values=acc.PHASES,
            optional=True,
        ),
        _by_cause("lazarus_restarts", "Attempts of a job ended and relaunched, by cause."),
        Family(
            "lazarus_job_seconds",
            "Job wall-clock seconds by state; goodput = productive / all states.",
            "counter",
            label="state",
            values=acc.STATES,
        ),
        Family(
            "lazarus_job_lost_steps",
            "Steps lost by the job's restarts (last step - resume step), all causes.",
            "counter",
        ),
        _gauge("lazarus_checkpoint_step", "Step of the newest valid checkpoint."),
        _gauge(
            "lazarus_checkpoint_timestamp_seconds",
            "Commit time of the newest valid checkpoint (unix seconds).",
        ),
        _gauge(
            "lazarus_checkpoint_interval_seconds",
            "The job's save interval: spec everySeconds or everySteps / stepRate, the shorter.",
        ),
        Family(
            "lazarus_failures_without_progress",
            "Consecutive failures without a new checkpoint.",
            "gauge",
        ),
    )


def namespace_families() -> NamespaceFamilies:
    def trainer(name: str, doc: str) -> Family:
        return Family(name, doc, "histogram", buckets=SAVE_BUCKETS)

    def jobs(name: str, doc: str) -> Family:
        return Family(name, doc, "counter")

    return NamespaceFamilies(
        jobs("lazarus_jobs_created", "Jobs launched (their first status write with a phase)."),
        jobs("lazarus_jobs_succeeded", "Jobs that reached Succeeded."),
        jobs("lazarus_jobs_failed", "Jobs that reached Failed."),
        _by_cause("lazarus_lost_steps", "Steps lost by restarts (last step - resume step)."),
        _by_cause(
            "lazarus_lost_seconds",
            "Running time lost by restarts (after the checkpoint resumed from).",
        ),
        Family(
            "lazarus_recovery_seconds",
            "Time from an attempt's end until all pods of the next attempt run.",
            "histogram",
            label="cause",
            values=acc.CAUSES,
            buckets=SECONDS_BUCKETS,
        ),
        trainer(
            "lazarus_checkpoint_save_seconds", "Trainer: save from state capture to commit start."
        ),
        trainer(
            "lazarus_checkpoint_stall_seconds", "Trainer: training paused per save (state copy)."
        ),
        trainer(
            "lazarus_checkpoint_durable_seconds",
            "Trainer: a step's state captured until committed.",
        ),
        trainer("lazarus_resume_seconds", "Trainer: loading the resume checkpoint, per attempt."),
        jobs("lazarus_checkpoint_written_bytes", "Trainer: bytes of committed checkpoints."),
        jobs(
            "lazarus_start_timeouts",
            "Attempts torn down because not all their pods ran within startTimeoutSeconds.",
        ),
        _by_cause(
            "lazarus_group_replacements",
            "Replica groups replaced alone while the others trained on (spec.faultTolerance).",
        ),
        jobs("lazarus_lighthouse_restarts", "Lighthouse pods of replica groups recreated."),
        Family(
            "lazarus_ft_stall_seconds",
            "Trainer: replica groups' longest pause at a failure between saves (survivors).",
            "histogram",
            buckets=FT_BUCKETS,
        ),
        Family(
            "lazarus_ft_rejoin_seconds",
            "Trainer: a group's failure until the quorum was whole again (its replacement).",
            "histogram",
            buckets=FT_BUCKETS,
        ),
    )
