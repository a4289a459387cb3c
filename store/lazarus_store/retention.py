"""Which checkpoints to keep and which to delete: a pure function, tested with hypothesis.

Safety rules (docs/contract.md section 7): the resume target, the newest valid
checkpoint in lineage, the best K by the metric, quarantined checkpoints and
saves in progress are never deleted; nothing is deleted unless a newer valid
checkpoint has committed; uncommitted prefixes go only after a safety age.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from lazarus_contract.rules import DEFAULT_KEEP_BEST, DEFAULT_KEEP_LATEST

DEFAULT_GC_AGE_S = 3600.0


@dataclass(frozen=True)
class RetentionPolicy:
    keep_latest: int = DEFAULT_KEEP_LATEST
    keep_best: int = DEFAULT_KEEP_BEST
    metric: str | None = None
    mode: Literal["min", "max"] = "min"
    gc_age_s: float = DEFAULT_GC_AGE_S

    def __post_init__(self) -> None:
        if self.keep_latest < 1:
            raise ValueError("keep_latest must be >= 1: the newest valid checkpoint is always kept")
        if self.keep_best < 0:
            raise ValueError("keep_best must be >= 0")
        if self.keep_best and not self.metric:
            raise ValueError("keep_best needs a metric name")
        if self.mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' or 'max', not {self.mode!r}")
        if self.gc_age_s < 0:
            raise ValueError("gc_age_s must be >= 0")


@dataclass(frozen=True)
class Candidate:
    """What retention needs to know about one checkpoint prefix (no storage access)."""

    name: str
    step: int
    attempt: int
    committed: bool
    valid: bool  # cheap validation passed (meaningful only when committed)
    quarantined: bool = False
    in_lineage: bool = True
    metrics: dict[str, float] = field(default_factory=dict)
    modified: float = 0.0  # newest object's mtime, seconds since the epoch


@dataclass(frozen=True)
class RetentionPlan:
    delete: tuple[str, ...]  # committed checkpoints past the policy
    keep: dict[str, tuple[str, ...]]  # name -> reasons
    garbage: tuple[str, ...]  # uncommitted leftovers and dead branches past the safety age

    @property
    def removals(self) -> tuple[str, ...]:
        return self.delete + self.garbage


def metric_value(metrics: dict[str, float], metric: str) -> float | None:
    """The evaluation result `metric` names in a manifest's metrics, or None (absent, NaN).

    Manifests hold a step's metrics and its evaluation's; evaluation results carry HF's
    `eval_` prefix, which a configured name may leave out (`loss` for `eval_loss`): the
    prefixed key wins, so a training `loss` beside `eval_loss` is never taken for it. The
    rule needs no evaluation of the current process, so a resumed run keeps the best its
    predecessors committed from its first commit on."""
    keys = (metric,) if metric.startswith("eval_") else (f"eval_{metric}", metric)
    for key in keys:
        value = metrics.get(key)
        if value is not None and not math.isnan(value):
            return float(value)
    return None


def _latest_and_best(usable: Sequence[Candidate], policy: RetentionPolicy) -> dict[str, list[str]]:
    """What the policy keeps among usable checkpoints (newest first), and why."""
    keep: dict[str, list[str]] = {}
    for c in usable[: policy.keep_latest]:
        keep.setdefault(c.name, []).append("latest")
    if policy.keep_best and policy.metric:
        metric = policy.metric
        scored = [(v, c) for c in usable if (v := metric_value(c.metrics, metric)) is not None]
        sign = 1.0 if policy.mode == "min" else -1.0
        scored.sort(key=lambda vc: (sign * vc[0], -vc[1].step, -vc[1].attempt))
        for _, c in scored[: policy.keep_best]:
            keep.setdefault(c.name, []).append(f"best {metric}")
    return keep


def plan_retention(
    candidates: Sequence[Candidate],
    policy: RetentionPolicy,
    *,
    resumed_from: str | None = None,
    now: float,
) -> RetentionPlan:
    usable = sorted(
        (c for c in candidates if c.committed and c.valid and not c.quarantined and c.in_lineage),
        key=lambda c: (c.step, c.attempt),
        reverse=True,
    )
    keep = _latest_and_best(usable, policy)

    def hold(name: str, why: str) -> None:
        keep.setdefault(name, []).append(why)

    newest = usable[0] if usable else None

    delete: list[str] = []
    garbage: list[str] = []
    for c in candidates:
        if c.name == resumed_from:
            hold(c.name, "resume target")
        if c.quarantined:
            hold(c.name, "quarantined (never deleted automatically)")
        if c.name in keep:
            continue
        old = now - c.modified >= policy.gc_age_s
        if not c.committed:
            if old:
                garbage.append(c.name)
            else:
                hold(
                    c.name,
                    "uncommitted, younger than the safety age (save in progress?)",
                )
        elif not c.in_lineage:
            if old and newest is not None:
                garbage.append(c.name)
            else:
                hold(c.name, "dead branch, younger than the safety age")
        elif not c.valid:
            hold(c.name, "invalid: left for inspection (quarantine or delete by hand)")
        elif newest is not None and (c.step, c.attempt) < (newest.step, newest.attempt):
            delete.append(c.name)
        else:
            hold(c.name, "no newer valid checkpoint")
    return RetentionPlan(
        delete=tuple(delete),
        keep={k: tuple(v) for k, v in keep.items()},
        garbage=tuple(garbage),
    )
