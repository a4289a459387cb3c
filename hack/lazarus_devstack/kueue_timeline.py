"""One Kueue preemption end to end, as the API server shows it: when each of its moments
was first seen (monotonic seconds), polled from the victim's and the preemptor's
TrainingJob, Workload and pods. bench.goodput's queue-preemption trace records one per
event and reports the spans between them (who the time went to: the victim's save, the
operator's hand-back, Kueue, the preemptor, the victim's restart).

Polled, not watched: a moment is seen up to `every` seconds late, plus the API call's
own latency under load; spans shorter than that are noise.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from kubernetes.client.rest import ApiException

from .harness import GROUP, PLURAL, VERSION
from .kueue_manifests import API

KUEUE_GROUP, KUEUE_VERSION = API.split("/")
LABEL_JOB = f"{GROUP}/job"  # the operator's label on a job's Workloads

# The moments, in the order one preemption passes them.
MOMENTS = (
    "evicted",  # the victim's Workload Evicted=True (Kueue took the quota back)
    "disrupted",  # the operator booked the disrupted restart (status.restarts)
    "terminating",  # the victim's pod deleted (the SIGTERM, its save starts)
    "pods_gone",  # the victim's pod gone (saved and exited, or killed)
    "cleared",  # the victim's Workload admission cleared (the operator hands it back)
    "hp_admitted",  # the preemptor's Workload admitted (Kueue)
    "hp_pod",  # the preemptor's pod created (the operator launches)
    "hp_done",  # the preemptor Succeeded
    "hp_released",  # the preemptor's Workload Finished (the operator hands it back)
    "readmitted",  # the victim's Workload admitted again (Kueue)
    "pod_created",  # the victim's next attempt's pod created (the operator relaunches)
    "running",  # the victim Running its next attempt (its pod Running)
)
# (span, from, to): what each part of the wait was.
SPANS = (
    ("stop", "evicted", "pods_gone"),  # SIGTERM, save, exit (the operator's teardown)
    ("hand_back", "pods_gone", "cleared"),  # the operator's yield
    ("preemptor_admit", "cleared", "hp_admitted"),  # Kueue
    ("preemptor_launch", "hp_admitted", "hp_pod"),  # the operator
    ("preemptor_run", "hp_pod", "hp_done"),  # its start, 10 steps, its save
    ("preemptor_release", "hp_done", "hp_released"),  # the operator
    ("readmit", "hp_released", "readmitted"),  # Kueue
    ("relaunch", "readmitted", "pod_created"),  # the operator
    ("quota_away", "cleared", "readmitted"),  # the victim held no quota
)


def _admitted(wl: dict[str, Any] | None) -> bool:
    return bool(wl and (wl.get("status") or {}).get("admission"))


def _cond(wl: dict[str, Any] | None, ctype: str) -> bool:
    conds = ((wl or {}).get("status") or {}).get("conditions") or []
    return any(c.get("type") == ctype and c.get("status") == "True" for c in conds)


class Timeline:
    """Polls in a thread from construction until `stop`; `seen` holds each moment's
    first sighting."""

    def __init__(
        self,
        core: Any,
        custom: Any,
        ns: str,
        victim: tuple[str, int, int],
        preemptor: str,
    ) -> None:
        """`victim`: its name, running attempt, and disrupted restarts booked so far."""
        self.core, self.custom, self.ns = core, custom, ns
        self.victim, self.attempt, self.disrupted_before = victim
        self.hp = preemptor
        self.seen: dict[str, float] = {}
        self.errors = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def stop(self) -> dict[str, float]:
        self._stop.set()
        self._thread.join()
        return dict(self.seen)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.poll()
            except ApiException:
                self.errors += 1  # a slow or refused call: the next poll sees it
            self._stop.wait(0.2)

    def _job(self, name: str) -> dict[str, Any]:
        try:
            got = self.custom.get_namespaced_custom_object(GROUP, VERSION, self.ns, PLURAL, name)
        except ApiException as err:
            if err.status == 404:
                return {}
            raise
        return dict(got.get("status") or {})

    def _workload(self, job: str) -> dict[str, Any] | None:
        """The job's newest live Workload (not Finished), else its newest."""
        got = self.custom.list_namespaced_custom_object(
            KUEUE_GROUP, KUEUE_VERSION, self.ns, "workloads", label_selector=f"{LABEL_JOB}={job}"
        )
        items = sorted(got.get("items") or [], key=lambda w: w["metadata"]["name"])
        live = [w for w in items if not _cond(w, "Finished")]
        newest = (live or items or [None])[-1]
        return dict(newest) if newest else None

    def poll(self) -> None:
        now, v, hp = time.monotonic(), self.victim, self.hp
        vw, hw = self._workload(v), self._workload(hp)
        st = self._job(v)
        pods = {p.metadata.name: p for p in self.core.list_namespaced_pod(self.ns).items}
        old, new = f"{v}-a{self.attempt}-0", f"{v}-a{self.attempt + 1}-0"
        seen = self.seen

        def mark(moment: str, ok: bool) -> None:
            if ok and moment not in seen:
                seen[moment] = now

        mark("evicted", _cond(vw, "Evicted") and _admitted(vw))
        disrupted = int((st.get("restarts") or {}).get("disrupted") or 0)
        mark("disrupted", disrupted > self.disrupted_before)
        mark("terminating", old in pods and pods[old].metadata.deletion_timestamp is not None)
        mark("pods_gone", "evicted" in seen and old not in pods)
        mark("cleared", "evicted" in seen and not _admitted(vw))
        mark("hp_admitted", _admitted(hw))
        mark("hp_pod", any(n.startswith(f"{hp}-a") for n in pods))
        mark("hp_done", self._job(hp).get("phase") == "Succeeded")
        mark("hp_released", _cond(hw, "Finished"))
        mark("readmitted", "cleared" in seen and _admitted(vw))
        mark("pod_created", new in pods)
        running = st.get("phase") == "Running" and int(st.get("attempt") or 0) > self.attempt
        mark("running", running)


def spans(seen: dict[str, float]) -> dict[str, float]:
    """Each span of SPANS both of whose moments were seen, seconds."""
    return {name: round(seen[b] - seen[a], 2) for name, a, b in SPANS if a in seen and b in seen}
