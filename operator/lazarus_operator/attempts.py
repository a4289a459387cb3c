"""Attempt arithmetic, in one place: which attempt a pod belongs to, the number the
next launch takes, and the attempt whose lineage the store is asked about."""

from __future__ import annotations

import re
from typing import Any

from lazarus_contract import rules

from .builders import LABEL_ATTEMPT


def pod_attempt(pod: dict[str, Any]) -> int:
    """N of a pod from its attempt label (0 if missing or not a number)."""
    try:
        return int(((pod.get("metadata") or {}).get("labels") or {}).get(LABEL_ATTEMPT, "0"))
    except ValueError:
        return 0


_POD = re.compile(r"-a(\d+)-(?:\d+(?:-r\d+)?|lighthouse)$")


def attempt_of(pod: str) -> int:
    """N of a pod named `<job>-a<N>-<index>`, a replica group's replacement
    `<job>-a<N>-<index>-r<generation>` or the lighthouse (0 if not ours)."""
    m = _POD.search(pod)
    return int(m.group(1)) if m else 0


def next_attempt(current: int, root_next: int) -> int:
    """The number the next launch takes: after this job's latest attempt, and above
    every number the checkpoint root's fence log has taken (unique per root; the
    contract's rule, which a trainer numbering its own attempt applies too)."""
    return rules.next_attempt(current + 1, root_next)


def lineage_attempt(current: int, *, launching: bool) -> int | None:
    """The attempt whose lineage the store selects in: the running one for a progress
    refresh; the next one before a launch or a relaunch decision; None before the
    first launch (the store then takes the one after its fence log's newest)."""
    if not current:
        return None
    return current + 1 if launching else current


def older_and_current(
    pods: list[dict[str, Any]], attempt: int
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The pods of earlier attempts (all of them before the first launch), and the
    pods of `attempt`; a later attempt's pods (another job on the root) are neither."""
    older = [p for p in pods if pod_attempt(p) < attempt or attempt == 0]
    current = [p for p in pods if pod_attempt(p) == attempt and attempt > 0]
    return older, current
