"""Many objects' metric series in one collector, a flat array of floats per object.

prometheus_client keeps each labelled series as objects of its own: a child metric,
a value object and a lock per counter, per histogram bucket and per sum (45 KB for
the ~160 series a job had before issue 28). Here an object (a job, or a namespace)
is one `array('d')` (8 bytes a value), keyed by its label values, and the series
are built at scrape time, with the same names, labels and values as the library's
Counter, Gauge and Histogram would expose (`_total` counters, cumulative `le`
buckets, `_count` and `_sum`; no `_created`, as the registry disables them). A row
may be given an expiry time: from then on it is neither exposed nor recreated.
"""

from __future__ import annotations

import math
import threading
import time
from array import array
from bisect import bisect_left
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Final, Literal

from prometheus_client import CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

Kind = Literal["counter", "gauge", "histogram"]
Key = tuple[str, ...]  # the row's label values: (namespace, trainingjob) or (namespace,)
LABELS: Final = ("namespace", "trainingjob")
UNSET: Final = math.nan  # an optional gauge with this value is not exposed


@dataclass(frozen=True)
class Family:
    """One metric family: its values per row are `width` floats per label value."""

    name: str
    doc: str
    kind: Kind
    label: str = ""  # the one label beyond the row's, if any
    values: tuple[str, ...] = ("",)  # that label's values (("",): no label)
    buckets: tuple[float, ...] = ()  # histograms: finite upper bounds
    optional: bool = False  # gauges: exposed only while set (not UNSET)

    def le(self) -> tuple[str, ...]:
        """The buckets' `le` labels as prometheus_client writes them ("1.0", "+Inf")."""
        bounds = (*self.buckets, math.inf)
        return tuple(floatToGoString(b) for b in bounds)  # type: ignore[no-untyped-call]

    @property
    def width(self) -> int:
        # histograms: a count per bucket (non-cumulative, +Inf last), then the sum
        return len(self.buckets) + 2 if self.kind == "histogram" else 1


class JobSeries(Collector):
    """The families' series of every row (`labels`: the row's label names),
    registered in `registry`; `clock` (unix seconds) decides expiry."""

    def __init__(
        self,
        families: Sequence[Family],
        registry: CollectorRegistry,
        labels: tuple[str, ...] = LABELS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.families = tuple(families)
        self.labels = labels
        self._clock = clock
        self._at: dict[tuple[str, str], int] = {}
        start = 0
        for fam in self.families:
            for v in fam.values:
                self._at[(fam.name, v)] = start
                start += fam.width
        self._init = array("d", [0.0]) * start
        for fam in self.families:
            if fam.optional:
                for v in fam.values:
                    self._init[self._at[(fam.name, v)]] = UNSET
        self._le = {fam.name: fam.le() for fam in self.families if fam.kind == "histogram"}
        self._jobs: dict[Key, array[float]] = {}
        self._expires: dict[Key, float] = {}
        self._lock = threading.Lock()
        registry.register(self)

    def _row(self, key: Key) -> array[float]:
        row = self._jobs.get(key)
        if row is None:
            row = self._jobs[key] = array("d", self._init)
        return row

    def touch(self, key: Key) -> None:
        """The row's series exist (at 0) from now on, so `increase()` sees the first change."""
        with self._lock:
            self._row(key)

    def inc(self, key: Key, fam: Family, amount: float, value: str = "") -> None:
        with self._lock:
            self._row(key)[self._at[(fam.name, value)]] += amount

    def set(self, key: Key, fam: Family, x: float, value: str = "") -> None:
        with self._lock:
            self._row(key)[self._at[(fam.name, value)]] = x

    def observe(self, key: Key, fam: Family, x: float, value: str = "") -> None:
        at = self._at[(fam.name, value)]
        with self._lock:
            row = self._row(key)
            row[at + bisect_left(fam.buckets, x)] += 1  # le: the first bound >= x
            row[at + len(fam.buckets) + 1] += x

    def expire(self, key: Key, at: float | None) -> bool:
        """The row goes at `at` (unix seconds; None: it stays), or at the earlier time
        set before. False once that has passed: the row is gone, and the caller must
        not write it again."""
        with self._lock:
            if at is None:
                self._expires.pop(key, None)
                return True
            at = self._expires[key] = min(at, self._expires.get(key, at))
            if at > self._clock():
                return True
            self._jobs.pop(key, None)
            return False

    def forget(self, key: Key) -> None:
        with self._lock:
            self._jobs.pop(key, None)
            self._expires.pop(key, None)

    def __len__(self) -> int:
        return len(self._jobs)

    def describe(self) -> Iterator[Metric]:
        """The family names, so the registry refuses a duplicate at registration."""
        for fam in self.families:
            yield _empty(fam, self.labels)

    def _snapshot(self) -> list[tuple[Key, array[float]]]:
        """Copies of the live rows, sorted; expired rows are dropped here."""
        with self._lock:
            now = self._clock()
            for key, at in self._expires.items():
                if at <= now:
                    self._jobs.pop(key, None)
            return sorted((k, array("d", r)) for k, r in self._jobs.items())

    def collect(self) -> Iterator[Metric]:
        rows = self._snapshot()
        for fam in self.families:
            out = _empty(fam, self.labels)
            le = self._le.get(fam.name)
            for key, row in rows:
                for v in fam.values:
                    labels = [*key, v] if fam.label else list(key)
                    at = self._at[(fam.name, v)]
                    _add(out, fam, labels, row[at : at + fam.width], le)
            yield out


def _empty(fam: Family, row_labels: tuple[str, ...]) -> Metric:
    labels = [*row_labels, fam.label] if fam.label else list(row_labels)
    if fam.kind == "counter":
        return CounterMetricFamily(fam.name, fam.doc, labels=labels)
    if fam.kind == "gauge":
        return GaugeMetricFamily(fam.name, fam.doc, labels=labels)
    return HistogramMetricFamily(fam.name, fam.doc, labels=labels)


def _add(
    out: Metric, fam: Family, labels: list[str], values: array[float], le: tuple[str, ...] | None
) -> None:
    """One series (a histogram's: its buckets, count and sum) from the row's values."""
    if isinstance(out, HistogramMetricFamily) and le is not None:
        cumulative, buckets = 0.0, []
        for bound, n in zip(le, values, strict=False):
            cumulative += n
            buckets.append((bound, cumulative))
        out.add_metric(labels, buckets, values[len(le)])
    elif isinstance(out, CounterMetricFamily | GaugeMetricFamily):
        x = values[0]
        if not math.isnan(x):
            out.add_metric(labels, x)
