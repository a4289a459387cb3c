"""A quick exit once training is over.

After the termination message is written the process has nothing left to do, yet
CPython's last act is a full garbage collection over every object still alive: with
torch, transformers and a model loaded, 2-6 s on a 2-core node. That time is on the
restart path (the operator relaunches once the gang's pods have exited) and inside a
preemption's grace period (the kubelet's SIGKILL ends it). Freezing the heap at exit
moves those objects out of the collector's reach; objects are still released by
reference counting, and atexit handlers registered later (torch's, the user's) run
first, since atexit runs last-registered first.
"""

from __future__ import annotations

import atexit
import functools
import gc


@functools.cache
def freeze_heap_at_exit() -> None:
    """Skip the interpreter's final collection (registered once per process)."""
    atexit.register(gc.freeze)
