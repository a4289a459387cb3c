"""What every benchmark here does the same way: time a call, run methods interleaved
round by round after a warm-up (the order rotates, so none always gets the warmer
machine), rest in an idle gap before each (this VM hands freed memory back within
seconds, which flatters back-to-back runs), and summarise as median (min-max), with
ratios taken within a round (same machine state), then over rounds. Pure but for
the clock and the sleep."""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")


def timed(fn: Callable[[], object]) -> float:
    """Seconds `fn()` took (perf_counter)."""
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def rest(idle: float) -> None:
    """An idle gap before a measurement: collect garbage, then sleep."""
    gc.collect()
    time.sleep(idle)


def rotated(names: Sequence[T], r: int) -> list[T]:
    """Round r's order: the names rotated by r (two names alternate who goes first)."""
    if not names:
        return []
    k = r % len(names)
    return [*names[k:], *names[:k]]


@dataclass(frozen=True)
class Slot:
    """One measurement in the schedule: round `r` (0-based) of `name`."""

    r: int
    name: str
    warmup: bool

    @property
    def tag(self) -> str:
        """The log label: warm-up, or the round number (counted over warm-ups too)."""
        return "warm-up" if self.warmup else f"round {self.r}"


def interleaved(names: Sequence[str], rounds: int, warmup: int = 0) -> Iterator[Slot]:
    """`warmup` discarded rounds, then `rounds` measured ones, each over every name in
    rotated order. Rounds count from 0 over both, so after one warm-up the first
    measured round is "round 1"."""
    for r in range(warmup + rounds):
        for name in rotated(names, r):
            yield Slot(r, name, r < warmup)


@dataclass(frozen=True)
class Spread:
    """Median, min and max of a sample."""

    median: float
    min: float
    max: float

    @classmethod
    def of(cls, xs: Sequence[float]) -> Spread:
        return cls(statistics.median(xs), min(xs), max(xs))


def spread(xs: Sequence[float]) -> str:
    """`median (min-max)`, fixed width, or "n/a" for no samples."""
    if not xs:
        return "n/a"
    s = Spread.of(xs)
    return f"{s.median:7.3f} ({s.min:.3f}-{s.max:.3f})"


def ratios(num: Sequence[float], den: Sequence[float]) -> list[float]:
    """num[i] / den[i] for each round i (both measured in the same round); [] when the
    samples do not pair up."""
    if not num or not den or len(num) != len(den):
        return []
    return [a / b for a, b in zip(num, den, strict=True)]


def percentile(xs: Sequence[float], p: float) -> float:
    """The nearest-rank p-th percentile (p in 0..100) of a non-empty sample."""
    s = sorted(xs)
    return s[min(len(s) - 1, max(0, round(p / 100 * len(s) + 0.5) - 1))]


def latency_summary(xs: Sequence[float]) -> dict[str, float]:
    """p50/p99/max/mean in seconds, rounded to ms: the latency benchmarks' one shape."""
    return {
        "p50_s": round(statistics.median(xs), 3),
        "p99_s": round(percentile(xs, 99), 3),
        "max_s": round(max(xs), 3),
        "mean_s": round(statistics.fmean(xs), 3),
    }
