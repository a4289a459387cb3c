"""The automatic checkpoint interval (docs/contract.md section 5a, docs/trainer.md).

Young (1974) and Daly (2006): with a save costing training `C` seconds and failures
arriving at `rate` per second (MTBF M = 1/rate), the compute time between saves that
loses least is about sqrt(2 C M); Daly's higher-order form (used here) stays right when
C is not small against M. The operator estimates the rate and hands it to the running
trainer in a pod annotation; the trainer measures C at its own saves and applies this.
Pure: tables in tests/trainer/test_autointerval.py.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from .timings import timings_object

# The rate channel: failures per hour, a plain decimal ("0.25"), set by the operator on
# every pod of an attempt; the trainer reads it through the downward-API annotations file.
ANNOTATION_FAILURE_RATE: Final = "lazarus.dev/failure-rate"
# Set by the operator when spec.checkpoint.save.auto.enabled; the trainer's bounds.
ENV_SAVE_AUTO: Final = "LAZARUS_SAVE_AUTO"
ENV_SAVE_AUTO_MIN_SECONDS: Final = "LAZARUS_SAVE_AUTO_MIN_SECONDS"
ENV_SAVE_AUTO_MAX_SECONDS: Final = "LAZARUS_SAVE_AUTO_MAX_SECONDS"
# What a save recorded of the schedule it followed (manifest timings, section 4a).
TIMINGS_SAVE_COST: Final = "saveCostSeconds"
TIMINGS_INTERVAL: Final = "intervalSeconds"
TIMINGS_FAILURES_PER_HOUR: Final = "failuresPerHour"

DEFAULT_MIN_SECONDS: Final = 60.0
DEFAULT_MAX_SECONDS: Final = 6 * 3600.0


@dataclass(frozen=True)
class Bounds:
    """The interval never leaves [min_seconds, max_seconds]: a burst of failures cannot
    make the trainer save all the time, a quiet start cannot make it stop saving."""

    min_seconds: float = DEFAULT_MIN_SECONDS
    max_seconds: float = DEFAULT_MAX_SECONDS

    def __post_init__(self) -> None:
        if not 0 < self.min_seconds <= self.max_seconds:
            raise ValueError(
                f"interval bounds must be 0 < min <= max: {self.min_seconds}..{self.max_seconds}"
            )

    def clamp(self, seconds: float) -> float:
        return min(self.max_seconds, max(self.min_seconds, seconds))


def daly_interval(cost: float, rate: float) -> float:
    """Compute seconds between saves that minimise expected waste (Daly 2006, eq. 37).

    `cost`: training seconds one save takes away; `rate`: failures per second. No
    failures: infinite; a free save: 0 (save at every chance)."""
    if cost < 0 or rate < 0 or not (math.isfinite(cost) and math.isfinite(rate)):
        raise ValueError(f"cost and rate must be finite and >= 0, got {cost}, {rate}")
    if rate == 0:
        return math.inf
    mtbf = 1.0 / rate
    if cost >= 2 * mtbf:
        return mtbf  # saves cost more than failures lose: Daly's limit
    x = cost / (2 * mtbf)
    return math.sqrt(2 * cost * mtbf) * (1 + math.sqrt(x) / 3 + x / 9) - cost


def auto_interval(cost: float, rate: float, bounds: Bounds) -> float:
    """The interval the trainer follows: Daly's, within `bounds`."""
    return bounds.clamp(daly_interval(cost, rate))


def format_rate(per_second: float) -> str:
    """The annotation's value: failures per hour, 6 significant digits."""
    return f"{per_second * 3600:.6g}"


def parse_rate(text: str | None) -> float | None:
    """Failures per second from the annotation's value; None when absent or not a
    finite number >= 0 (the trainer then keeps its last rate: a bad value loses nothing)."""
    if text is None:
        return None
    try:
        per_hour = float(text.strip())
    except ValueError:
        return None
    if not math.isfinite(per_hour) or per_hour < 0:
        return None
    return per_hour / 3600


def decode_schedule(extra: Mapping[str, Any]) -> dict[str, float]:
    """The schedule facts a manifest's `extra` records (section 4a): only finite numbers
    >= 0 under the three keys; anything else (another writer's manifest) is left out."""
    t = timings_object(extra)
    out: dict[str, float] = {}
    for key in (TIMINGS_INTERVAL, TIMINGS_SAVE_COST, TIMINGS_FAILURES_PER_HOUR):
        v = t.get(key)
        if not isinstance(v, bool) and isinstance(v, int | float) and 0 <= v < math.inf:
            out[key] = float(v)
    return out
