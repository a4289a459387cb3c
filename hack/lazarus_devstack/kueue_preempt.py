"""Preempting a running TrainingJob through Kueue, as a shared cluster's queue does.

A higher-priority TrainingJob enters the LocalQueue the victim holds the whole quota
of; Kueue evicts the victim (`Preempted`), the operator stops its pods (the SIGTERM
save) and hands the quota over, the victim waits `Queued`, and Kueue re-admits it once
the preemptor has finished. Used by tests/e2e/test_kueue_preemption_e2e.py and by
bench.goodput's queue-preemption trace, so both preempt the same way.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from .harness import GROUP, PLURAL, VERSION, wait_for
from .kueue_manifests import API, QUEUE_LABEL, Doc
from .kueue_timeline import Timeline

PRIORITY_LABEL = "kueue.x-k8s.io/priority-class"


def priority_classes(low: str, high: str) -> list[Doc]:
    """Two WorkloadPriorityClasses: `low` (10) and `high` (100)."""
    return [
        {"apiVersion": API, "kind": "WorkloadPriorityClass", "metadata": {"name": n}, "value": v}
        for n, v in ((low, 10), (high, 100))
    ]


def in_queue(body: Doc, queue: str, priority: str) -> Doc:
    """`body` (a TrainingJob) labelled into LocalQueue `queue` at `priority`."""
    labels = body["metadata"].setdefault("labels", {})
    labels.update({QUEUE_LABEL: queue, PRIORITY_LABEL: priority})
    return body


@dataclass(frozen=True)
class Preemption:
    """One preemption's moments (monotonic seconds) and what the victim's status said."""

    started: float  # the preemptor created
    evicted: float  # the victim's disrupted restart booked
    queued: float  # the victim Queued (yielded: its pods gone)
    readmitted: float  # the victim Running its next attempt
    reason: str  # the victim's lastFailure.reason (Kueue's eviction reason)
    moments: dict[str, float] = field(default_factory=dict)  # kueue_timeline's, if watched


class Preempter:
    """Preempts jobs in one namespace with high-priority TrainingJobs."""

    def __init__(self, custom: Any, namespace: str, timeout: float = 180, core: Any = None) -> None:
        """`core` (a CoreV1Api): also record each preemption's moments (a Timeline)."""
        self.custom, self.ns, self.timeout, self.core = custom, namespace, timeout, core

    def status(self, name: str) -> dict[str, Any]:
        got = self.custom.get_namespaced_custom_object(GROUP, VERSION, self.ns, PLURAL, name)
        return dict(got.get("status") or {})

    def _wait(self, name: str, ok: Callable[[dict[str, Any]], bool], what: str) -> float:
        def check() -> bool:
            st = self.status(name)
            if st.get("phase") == "Failed":
                raise RuntimeError(f"{name} Failed while waiting for {what}: {st}")
            return ok(st)

        wait_for(check, self.timeout, f"{name}: {what}", every=0.1)
        return time.monotonic()

    def preempt(self, victim: str, preemptor: Doc) -> Preemption:
        """Create `preemptor` (a TrainingJob in the victim's queue at a higher priority),
        then wait: the victim evicted and Queued, the preemptor Succeeded, the victim
        re-admitted and Running its next attempt."""
        before = self.status(victim)
        attempt = int(before.get("attempt") or 0)
        disrupted = int((before.get("restarts") or {}).get("disrupted") or 0)
        high = preemptor["metadata"]["name"]
        timeline = None
        if self.core is not None:
            victim_at = (victim, attempt, disrupted)
            timeline = Timeline(self.core, self.custom, self.ns, victim_at, high)
        try:
            got = self._preempt(victim, preemptor, attempt, disrupted)
        finally:
            moments = timeline.stop() if timeline is not None else {}
        return replace(got, moments={"created": got.started, **moments})

    def _preempt(self, victim: str, preemptor: Doc, attempt: int, disrupted: int) -> Preemption:
        t0 = time.monotonic()
        self.custom.create_namespaced_custom_object(GROUP, VERSION, self.ns, PLURAL, preemptor)
        evicted = self._wait(
            victim,
            lambda st: int((st.get("restarts") or {}).get("disrupted") or 0) > disrupted,
            "evicted by Kueue (a disrupted restart)",
        )
        queued = self._wait(victim, lambda st: st.get("phase") == "Queued", "Queued (yielded)")
        reason = str((self.status(victim).get("lastFailure") or {}).get("reason", ""))
        done = "the preemptor Succeeded"
        self._wait(preemptor["metadata"]["name"], lambda st: st.get("phase") == "Succeeded", done)
        back = self._wait(
            victim,
            lambda st: int(st.get("attempt") or 0) > attempt and st.get("phase") == "Running",
            f"re-admitted: attempt {attempt + 1} Running",
        )
        return Preemption(t0, evicted, queued, back, reason)
