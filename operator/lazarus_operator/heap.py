"""Process memory knobs: glibc's malloc arenas, and heap snapshots on demand.

`limit_arenas`: glibc gives each thread that contends for malloc an arena of its
own (up to 8 per core), and memory freed in one arena is not reused by another:
with 32 API threads and a launch burst, RSS stays at the burst's high-water mark
spread across arenas. A few arenas cost little contention (the GIL serialises
most allocation anyway). Called before any thread starts.

`trim_forever`: glibc keeps the memory a burst freed (a launch's decoded watch
events, 100 MB of free chunks at 100 jobs) mapped until `malloc_trim` gives
its pages back; once a minute costs milliseconds (15 ms for 250 MB of 1 KB
objects with every other one freed).

`HeapDumper` (off unless LAZARUS_HEAP_SNAPSHOTS names a folder): the first
SIGUSR1 starts tracemalloc, each later one writes a snapshot there as
`heap-<n>.tracemalloc` plus glibc's `malloc_stats` on stderr. A snapshot so
holds what was allocated since the first signal and is still alive (a launch's
jobs, not the imports: tracing the kubernetes client's imports takes minutes).
Compare two with `tracemalloc.Snapshot.load(...).compare_to(...)`. tracemalloc
slows the process and costs memory of its own: attribution runs only.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import functools
import gc
import logging
import signal
import sys
import tracemalloc
from pathlib import Path
from types import FrameType
from typing import Final

M_ARENA_MAX: Final = -8  # glibc malloc.h
TRIM_SECONDS: Final = 60.0
FRAMES: Final = 8  # traceback depth kept per allocation: enough to reach our code from kopf's

log = logging.getLogger(__name__)


@functools.cache
def _libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None


def limit_arenas(arenas: int) -> bool:
    """Cap glibc's malloc arenas (0: leave glibc's default). False where not glibc."""
    libc = _libc()
    if arenas <= 0 or libc is None or not hasattr(libc, "mallopt"):
        return False
    return bool(libc.mallopt(M_ARENA_MAX, arenas))


def trim() -> bool:
    """Give glibc's free pages back to the OS. False where not glibc."""
    libc = _libc()
    if libc is None or not hasattr(libc, "malloc_trim"):
        return False
    libc.malloc_trim(0)
    return True


async def trim_forever(interval: float) -> None:
    """`trim` every `interval` seconds (on the loop: it takes milliseconds)."""
    if _libc() is None:
        return
    while True:
        await asyncio.sleep(interval)
        trim()


class HeapDumper:
    """tracemalloc snapshots into `folder`: the first SIGUSR1 starts tracing, each
    later one writes a snapshot."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.count = 0
        folder.mkdir(parents=True, exist_ok=True)
        signal.signal(signal.SIGUSR1, self._on_signal)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if tracemalloc.is_tracing():
            self.dump()
        else:
            gc.collect()
            tracemalloc.start(FRAMES)
            log.warning("heap: tracing from now on")

    def dump(self) -> Path:
        gc.collect()  # what is garbage is not a job's memory
        self.count += 1
        path = self.folder / f"heap-{self.count}.tracemalloc"
        tracemalloc.take_snapshot().dump(str(path))
        traced, peak = tracemalloc.get_traced_memory()
        log.warning("heap snapshot %s: traced %d KB (peak %d KB)", path, traced >> 10, peak >> 10)
        libc = _libc()
        if libc is not None and hasattr(libc, "malloc_stats"):
            sys.stderr.flush()
            libc.malloc_stats()  # per-arena system/in-use bytes, to stderr
        return path
