"""Where a resume's time goes: one structured INFO line per resume, for bench/recovery.py
and for anyone reading a slow restart off a pod's log.

    resume timing {"checkpoint": ..., "started": <epoch s>, "ended": <epoch s>, "bytes": ...,
                   "seconds": {"lookup": ..., "fetch": ..., "verify": ..., "decode": ...,
                               "restore": ..., "record": ...}}

lookup: listing and manifests; fetch: the objects' bytes (their CRC32C is computed in line
as each range arrives); verify: that CRC32C time, summed over the ranges (inside fetch);
decode: the raw layout's parse; restore: into models, optimizers, schedulers, sampler,
RNGs; record: this attempt's fence record. Timing only: nothing here changes a resume.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from .storage import ReadStats

PREFIX = "resume timing "


@dataclass
class ResumeTiming:
    started: float = field(default_factory=time.time)  # epoch seconds: log lines compare
    seconds: dict[str, float] = field(default_factory=dict)
    reads: ReadStats = field(default_factory=ReadStats)
    checkpoint: str | None = None
    ended: float | None = None

    @contextmanager
    def part(self, name: str) -> Iterator[None]:
        t = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - t

    def line(self) -> str:
        """The log message, ending the timing now."""
        self.ended = time.time()
        seconds = {**self.seconds, "verify": self.reads.verify_seconds}
        record = {
            "checkpoint": self.checkpoint,
            "started": round(self.started, 6),
            "ended": round(self.ended, 6),
            "bytes": self.reads.bytes,
            "seconds": {k: round(v, 6) for k, v in seconds.items()},
        }
        return PREFIX + json.dumps(record, sort_keys=True)
