"""The automatic save interval (`LAZARUS_SAVE_AUTO`, docs/trainer.md): Daly's interval from
the save cost this trainer measures and the failure rate the operator hands it.

The cost C of a save is what it takes from training, not how long it takes: the stall
(training waits for the copy) plus how much the background write slows the steps that
run beside it. `SaveCost` measures both from the step boundaries rank 0 sees: the step
after a save's capture and every step while the save is in flight are compared with the
pace of steps without one. A synchronous save's whole time lands in that first step, so
the same sum is its cost. The time until the save is durable is not a cost: it adds to
what a failure loses whatever the interval, so it does not move the optimum.
Pure (times are passed in): tables in tests/trainer/test_autointerval.py.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from lazarus_contract.interval import (
    ENV_SAVE_AUTO_MAX_SECONDS,
    ENV_SAVE_AUTO_MIN_SECONDS,
    TIMINGS_FAILURES_PER_HOUR,
    TIMINGS_INTERVAL,
    TIMINGS_SAVE_COST,
    Bounds,
    auto_interval,
    decode_schedule,
)

from .config import LazarusConfig
from .termination import PermanentError

BASELINE_SMOOTHING = 0.2  # weight of a new step in the pace of steps without a save
COST_SMOOTHING = 0.5  # weight of the newest save in the cost


def _ewma(old: float | None, new: float, weight: float) -> float:
    return new if old is None else old + weight * (new - old)


@dataclass
class SaveCost:
    """C, smoothed over saves; None until a save has finished being measured."""

    cost: float | None = None
    baseline: float | None = None  # seconds a step takes with no save beside it
    _last: float | None = None  # the previous boundary's time
    _pending: float | None = None  # the measured save's cost so far
    _stall: float = 0.0  # the measured save's stall
    _attribute_next: bool = False  # the step after a capture holds the stall

    def started(self, stall: float) -> None:
        """A save captured the state (training waited `stall` seconds for it)."""
        self._finish()
        self._pending = 0.0
        self._stall = stall
        self._attribute_next = True

    def step(self, now: float, busy: bool) -> None:
        """A step boundary at `now`; `busy`: a background save is in flight."""
        dt = None if self._last is None else now - self._last
        self._last = now
        if dt is None:
            return
        if self._pending is not None and (busy or self._attribute_next):
            self._attribute_next = False
            if self.baseline is not None:
                self._pending += dt - self.baseline  # signed: jitter averages out
            return
        self._finish()
        self.baseline = _ewma(self.baseline, dt, BASELINE_SMOOTHING)

    def _finish(self) -> None:
        if self._pending is None:
            return
        # The stall is a floor: training waited that long whatever the pace says.
        self.cost = _ewma(self.cost, max(self._stall, self._pending), COST_SMOOTHING)
        self._pending = None


@dataclass
class AutoSchedule:
    """The interval to follow: Daly's from the cost and the rate once both are known,
    before that `first` seconds (the user's everySeconds, else the lower bound)."""

    bounds: Bounds = field(default_factory=Bounds)
    first: float | None = None
    cost: SaveCost = field(default_factory=SaveCost)
    rate: float | None = None  # failures per second, from the operator

    def every(self) -> float:
        if self.rate is None or self.cost.cost is None:
            return self.bounds.clamp(self.first or self.bounds.min_seconds)
        return auto_interval(self.cost.cost, self.rate, self.bounds)

    def resumed(self, extra: Mapping[str, Any]) -> None:
        """Start from what the resumed checkpoint's manifest (`extra`) recorded: the cost an
        earlier attempt measured and the rate it had. A restarted process would otherwise
        save at `first` again before it re-measures, once per restart, which costs most
        where failures come often. Its own measures are smoothed in as they come."""
        facts = decode_schedule(extra)
        if self.cost.cost is None and (cost := facts.get(TIMINGS_SAVE_COST)) is not None:
            self.cost.cost = cost
        if self.rate is None and (per_hour := facts.get(TIMINGS_FAILURES_PER_HOUR)) is not None:
            self.rate = per_hour / 3600

    def facts(self) -> dict[str, float]:
        """What a save records of the schedule it followed (manifest timings)."""
        out = {TIMINGS_INTERVAL: round(self.every(), 3)}
        if self.cost.cost is not None:
            out[TIMINGS_SAVE_COST] = round(self.cost.cost, 6)
        if self.rate is not None:
            out[TIMINGS_FAILURES_PER_HOUR] = round(self.rate * 3600, 6)
        return out


def schedule_for(config: LazarusConfig) -> AutoSchedule | None:
    """The automatic schedule `config` asks for (None: the fixed one); bad bounds are a
    permanent error naming them."""
    if not config.save_auto:
        return None
    lo, hi = config.save_auto_min_seconds, config.save_auto_max_seconds
    try:
        bounds = Bounds(lo, hi)
    except ValueError:
        raise PermanentError(
            f"{ENV_SAVE_AUTO_MIN_SECONDS}={lo}, {ENV_SAVE_AUTO_MAX_SECONDS}={hi}: "
            "the automatic interval's bounds must be 0 < min <= max seconds"
        ) from None
    return AutoSchedule(bounds, first=config.save_every_seconds or None)
