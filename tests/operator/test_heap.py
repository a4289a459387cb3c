"""The memory knobs: glibc's arenas and trim, and heap snapshots on SIGUSR1."""

from __future__ import annotations

import os
import signal
import sys
import tracemalloc
from pathlib import Path

import pytest

from lazarus_operator import heap

pytestmark = [
    pytest.mark.unit,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc"),
]


def test_glibc_takes_the_arena_cap_and_trims() -> None:
    assert heap.limit_arenas(0) is False  # 0: glibc's default, nothing set
    assert heap.limit_arenas(2) is True
    assert heap.trim() is True


def test_the_first_signal_starts_tracing_and_the_next_writes_a_snapshot(tmp_path: Path) -> None:
    previous = signal.getsignal(signal.SIGUSR1)
    try:
        dumper = heap.HeapDumper(tmp_path / "snaps")
        assert not tracemalloc.is_tracing()  # nothing until asked: imports stay fast
        os.kill(os.getpid(), signal.SIGUSR1)
        assert tracemalloc.is_tracing()
        kept = [bytearray(4096) for _ in range(64)]  # allocated after tracing began
        os.kill(os.getpid(), signal.SIGUSR1)
        snap = tracemalloc.Snapshot.load(str(tmp_path / "snaps" / "heap-1.tracemalloc"))
        here = snap.filter_traces([tracemalloc.Filter(True, __file__)])
        assert sum(t.size for t in here.traces) >= 64 * 4096
        assert dumper.count == 1 and kept
    finally:
        tracemalloc.stop()
        signal.signal(signal.SIGUSR1, previous)
