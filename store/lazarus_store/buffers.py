"""Each I/O thread's reusable part buffer.

A fresh 16 MiB `bytes` per part costs a page fault per 4 KiB page on every part on a
machine that hands freed memory back to the host; a buffer the thread keeps costs none.
A part is read, checksummed and written by one task on one thread, so the buffer is never
shared.
"""

from __future__ import annotations

import threading

_local = threading.local()


def part_buffer(n: int) -> memoryview:
    """This thread's buffer, at least `n` bytes; valid until the thread's next call."""
    buf: bytearray | None = getattr(_local, "buf", None)
    if buf is None or len(buf) < n:
        buf = _local.buf = bytearray(n)
    return memoryview(buf)[:n]
