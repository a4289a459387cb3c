"""When to save and with which reason: pure decisions, no I/O, no clock, no torch.

The caller passes the time and what every rank agreed at a step boundary (one
all_reduce of flags); the policy answers and remembers what carries over to the next
boundary (a queued periodic save, a failed save to retry, a decision an evaluation
will finish). Reasons are the manifest's (docs/contract.md section 1).
Tables: tests/trainer/test_save_policy.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum, StrEnum

from .autointerval import schedule_for
from .config import LazarusConfig


class Reason(StrEnum):
    PERIODIC = "periodic"  # every N steps or seconds (also a retried save of unknown reason)
    EVAL_BEST = "eval-best"  # the evaluation metric improved
    REQUESTED = "requested"  # the checkpoint-now annotation, or `save()` by hand
    PREEMPTION = "preemption"  # a stop signal, synchronous within the grace period
    FINAL = "final"  # the end of training


# A failed save is retried at a later boundary, not before this many backoffs: an outage
# is not hammered every step.
RETRY_DELAY_BACKOFFS = 8


@dataclass(frozen=True)
class Agreed:
    """The flags of one step boundary, max over ranks: true if any rank saw it."""

    stop: bool = False  # a stop signal arrived
    requested: bool = False  # a checkpoint-now request arrived (rank 0 watches)
    time_due: bool = False  # save_every_seconds elapsed (rank 0's clock)
    busy: bool = False  # a background save is in flight
    retry_due: bool = False  # a failed save's wait is over
    fenced: bool = False  # a newer attempt fenced this one out


class Act(Enum):
    NOTHING = "nothing"
    STOP = "stop"  # hand over to the stop handling (a preemption save, or none when fenced)
    STOP_AFTER_EVAL = "stop-after-eval"  # evaluate first; `report_eval` stops (and saves)
    DEFER = "defer"  # an evaluation follows: `after_eval` decides with its metrics
    QUEUE = "queue"  # a periodic save while one is in flight: try at the next boundary
    SAVE = "save"


@dataclass(frozen=True)
class Decision:
    act: Act
    reason: str | None = None
    fenced: bool = False  # with STOP: stop without saving


class StopPlan(Enum):
    """What a stop signal leads to, once an in-flight save has finished or been cut short."""

    COMMITTED = "committed"  # this step's state is committed already: nothing to save
    SHORTFALL = "shortfall"  # the grace left is shorter than a save takes: do not start one
    SAVE = "save"  # a synchronous preemption save


def periodic_due(step: int, every_steps: int) -> bool:
    """Step `step` is on the every-N-steps schedule (0: no schedule)."""
    return every_steps != 0 and step % every_steps == 0


def improves(value: float, best: float | None, mode: str) -> bool:
    """Whether `value` beats `best` (`mode` "min" or "max"); anything beats no best."""
    return best is None or (value < best if mode == "min" else value > best)


def metric_key(metrics: dict[str, float], metric: str) -> str | None:
    """The key of the configured metric in these results: its own name, else with HF's
    `eval_` prefix (`loss` finds `eval_loss`, as `metric_for_best_model` does); None if absent."""
    if not metric:
        return None
    for key in (metric, f"eval_{metric}"):
        if key in metrics:
            return key
    return None


def eval_improved(metrics: dict[str, float], metric: str, best: float | None, mode: str) -> bool:
    """Whether this evaluation improved the configured metric (none configured: never)."""
    key = metric_key(metrics, metric)
    return key is not None and improves(float(metrics[key]), best, mode)


def eval_shortfall(
    eval_estimate: float | None, save_estimate: float | None, remaining: float
) -> bool:
    """An evaluation and the save after it would not finish in time (no history: try)."""
    return eval_estimate is not None and eval_estimate + (save_estimate or 0.0) > remaining


def committed_at(last_committed: tuple[str, int] | None, step: int) -> bool:
    """Whether the state at `step` is committed already (a save of it would be a copy)."""
    return last_committed is not None and last_committed[1] == step


def stop_deadline(received_at: float | None, grace_seconds: float) -> float | None:
    """When the grace period after a stop signal ends; None while there was none."""
    return None if received_at is None else received_at + grace_seconds


def in_flight_wait(deadline: float, now: float, estimate: float | None) -> float:
    """How long to wait for an in-flight save so a preemption save still fits after it."""
    return max(0.0, deadline - now - (estimate or 0.0))


def grace_shortfall(estimate: float | None, remaining: float) -> bool:
    """A save would not finish in time (no history: try it)."""
    return estimate is not None and estimate > remaining


def stop_plan(committed: bool, shortfall: bool) -> StopPlan:
    if committed:
        return StopPlan.COMMITTED
    return StopPlan.SHORTFALL if shortfall else StopPlan.SAVE


def final_ok(save_at_end: bool, committed: bool) -> bool:
    """Training completed: the final state is committed, or no final save was asked for."""
    return not save_at_end or committed


class SavePolicy:
    """The save schedule of one rank; the flags it decides on are agreed by all ranks.

    Reads the schedule from `config` when it decides, as the config is the user's to change.
    With `auto` (the automatic interval), the time schedule is its interval and the
    every-N-steps schedule is off.
    """

    def __init__(self, config: LazarusConfig, now: float) -> None:
        self.config = config
        self.auto = schedule_for(config)
        self.last_save_at = now
        self.retry: str | None = None  # reason of a save that failed (not a preemption)
        self.retry_at = 0.0
        self.pending: str | None = None  # decided while another save was in flight
        self.deferred: str | None = None  # decided at a step an evaluation will follow

    def time_due(self, now: float, *, busy: bool = False, rate: float | None = None) -> bool:
        """Whether the time schedule is due at this boundary (rank 0's clock). With `auto`,
        also feeds it the boundary (`busy`: a save in flight) and the operator's `rate`."""
        if self.auto is None:
            every = self.config.save_every_seconds
        else:
            self.auto.cost.step(now, busy)
            self.auto.rate = rate if rate is not None else self.auto.rate
            every = self.auto.every()
        return every > 0 and now - self.last_save_at >= every

    def retry_due(self, now: float) -> bool:
        return self.retry is not None and now >= self.retry_at

    def at_boundary(self, step: int, agreed: Agreed, *, eval_follows: bool = False) -> Decision:
        """The decision at the boundary after optimizer step `step`."""
        if agreed.stop and eval_follows and not agreed.fenced:
            # The evaluation runs before the preemption save: skipping it would change what
            # a resumed run sees (its RNG draws, its metrics, perhaps the best checkpoint).
            self.deferred = None
            return Decision(Act.STOP_AFTER_EVAL)
        if agreed.stop or agreed.fenced:
            return Decision(Act.STOP, fenced=agreed.fenced)
        reason: str | None = None
        if agreed.requested:
            reason = Reason.REQUESTED
        elif agreed.time_due or (
            self.auto is None and periodic_due(step, self.config.save_every_steps)
        ):
            reason = Reason.PERIODIC
        elif agreed.retry_due:
            reason = self.retry or Reason.PERIODIC  # another rank's failure: same schedule
        elif self.pending:
            reason = self.pending
        if eval_follows:
            self.deferred = reason
            return Decision(Act.DEFER, reason)
        if reason is None:
            return Decision(Act.NOTHING)
        if agreed.busy and reason == Reason.PERIODIC:
            self.pending = reason  # at most one in flight
            return Decision(Act.QUEUE, reason)
        return Decision(Act.SAVE, reason)

    def after_eval(self, improved: bool) -> str | None:
        """The save an evaluation leads to: `eval-best`, else what the boundary deferred."""
        deferred, self.deferred = self.deferred, None
        return Reason.EVAL_BEST if improved else deferred

    def started(self, now: float, stall: float = 0.0) -> None:
        """A save captured the state (training waited `stall` seconds): queued and retried
        saves are served by it."""
        if self.auto is not None:
            self.auto.cost.started(stall)
        self.pending = None
        self.retry = None
        self.last_save_at = now

    def failed(self, reason: str, now: float) -> None:
        """A save failed. A preemption save is not retried: the stop handling reports it."""
        if reason != Reason.PREEMPTION:
            self.retry = reason
            self.retry_at = now + self.config.retry_backoff * RETRY_DELAY_BACKOFFS
