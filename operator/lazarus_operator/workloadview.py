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
        self.held: dict[Key, dict[str, Held]] = {}  # job -> Workload name -> own write

    def forget(self, key: Key) -> None:
        self.held.pop(key, None)

    def wrote(self, key: Key, body: Mapping[str, Any] | None) -> None:
        """The API's answer to a create or a patch of one of the job's Workloads."""
        if body is not None:
            self.held.setdefault(key, {})[_name(body)] = Held(time.monotonic(), slim(body))

    async def of_job(self, key: Key) -> list[dict[str, Any]]:
        """The job's Workloads (a replaced one too: kueueworkload.current picks)."""
        indexed = {_name(w): w for w in self.index().job_workloads(*key)}
        held = self.held.get(key, {})
        out = []
        for name in sorted(indexed.keys() | held.keys()):
            got = pick(indexed.get(name), held.get(name), time.monotonic())
            if got.held is None:
                held.pop(name, None)
            elif got.confirm:
                found = await self.kube.get_workload(key[0], name)
                held.pop(name, None)
                self.wrote(key, found)
                got = Pick(found, None)
            if got.workload is not None:
                out.append(got.workload)
        if not self.held.get(key):
            self.held.pop(key, None)
        return out
