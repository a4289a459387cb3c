"""When things were first seen, for bench.recovery: the process kubelets' log records
(they run in this process) and the changes of a watched list."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from kubernetes import watch


class KubeletLog(logging.Handler):
    """The process kubelets' log records (they run in this process), with their times."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.records: list[tuple[float, str]] = []
        self.guard = threading.Lock()
        logger = logging.getLogger("lazarus.kubelet")
        logger.setLevel(logging.INFO)
        logger.addHandler(self)

    def emit(self, record: logging.LogRecord) -> None:
        with self.guard:
            self.records.append((record.created, record.getMessage()))

    def first(self, prefix: str) -> float | None:
        with self.guard:
            return next((t for t, m in self.records if m.startswith(prefix)), None)


class Watcher:
    """When each change of a watched list was first seen: `seen(obj, now)` per event."""

    def __init__(
        self, list_fn: Callable[..., Any], *args: str, seen: Callable[[Any, float], None]
    ) -> None:
        self.list_fn, self.args, self.seen = list_fn, args, seen
        self._stop = threading.Event()
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        rv = ""
        while not self._stop.is_set():
            try:
                for ev in watch.Watch().stream(
                    self.list_fn, *self.args, resource_version=rv, timeout_seconds=5
                ):
                    obj = ev["object"]
                    self.seen(obj, time.time())
                    meta = obj["metadata"] if isinstance(obj, dict) else obj.metadata
                    rv = meta["resourceVersion"] if isinstance(obj, dict) else meta.resource_version
                    if self._stop.is_set():
                        break
            except Exception:  # an expired resourceVersion: list again
                rv = ""
                time.sleep(0.05)

    def stop(self) -> None:
        self._stop.set()
