"""A job's Kueue Workload as a cycle sees it: the watch's index (handlers.py,
`workloads_by_job`), repaired where the watch lags behind the operator's own writes,
as `podview` does for pods.

- created or patched but not yet seen: the API's answer stands in until the watch
  shows that version or a newer one, so a cycle never creates the Workload twice nor
  patches its conditions from a version older than its own last write;
- unseen for HELD_MEMORY_S: one GET asks the API (a watch that relisted after a gap,
  or one stuck behind a loaded loop); what it says is held afresh, or nothing.

Without Kueue's CRDs kopf serves no index here (it logs so once): the index stays
empty, the Workload reads as missing and its creation fails as a GET-then-POST did.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from .kube import Kube
from .watched import Watched, newer, slim

Key = tuple[str, str]  # (namespace, job)
HELD_MEMORY_S: Final = 30.0


@dataclass(frozen=True)
class Held:
    """The API's answer to the operator's last write of a Workload."""

    at: float  # monotonic time of the write (or of the GET that confirmed it)
    body: dict[str, Any]


@dataclass(frozen=True)
class Pick:
    """What a cycle reads, what stays held, and whether the API must be asked."""

    workload: dict[str, Any] | None
    held: Held | None
    confirm: bool = False


def pick(indexed: Mapping[str, Any] | None, held: Held | None, now: float) -> Pick:
    """The newer of the watch's Workload and the operator's own last write (pure)."""
    if held is None:
        return Pick(None if indexed is None else dict(indexed), None)
    if indexed is not None and newer(indexed, held.body):
        return Pick(dict(indexed), None)  # the watch caught up: it governs again
    return Pick(held.body, held, confirm=now - held.at >= HELD_MEMORY_S)


def _name(body: Mapping[str, Any]) -> str:
    return str((body.get("metadata") or {}).get("name", ""))


class WorkloadView:
    def __init__(self, kube: Kube, index: Callable[[], Watched]) -> None:
        self.kube, self.index = kube, index
        self.held: dict[Key, Held] = {}

    def forget(self, key: Key) -> None:
        self.held.pop(key, None)

    def wrote(self, key: Key, body: Mapping[str, Any] | None) -> None:
        """The API's answer to a create or a patch of the job's Workload."""
        if body is not None:
            self.held[key] = Held(time.monotonic(), slim(body))

    async def get(self, key: Key, name: str) -> dict[str, Any] | None:
        """The job's Workload `name`, or None when it does not exist."""
        held = self.held.get(key)
        if held is not None and _name(held.body) != name:
            held = None  # a Workload the job no longer reads
        got = pick(self.index().workload(*key, name), held, time.monotonic())
        if got.held is None:
            self.held.pop(key, None)
        if not got.confirm:
            return got.workload
        found = await self.kube.get_workload(key[0], name)
        if found is None:
            self.held.pop(key, None)
            return None
        self.wrote(key, found)
        return self.held[key].body
