"""bench.goodput's mode (d), replica groups, on the local loop: the job's spec, the trace's
events each hitting one group's pod, and what each event cost the others and the group.

The job is the other modes' with `spec.faultTolerance` {replicaGroups: 2,
minReplicaGroups: 1} (replicas 2, half the batch per group: the same global batch) and a
required anti-affinity that keeps its group pods on distinct nodes (the loop has a third
node in this mode: a replacement's node while the pod it replaces is still terminating
or its node lost; with preferred anti-affinity a replacement landed beside the survivor,
and one node loss took both). Event i hits group
`hit_group(i)`'s current pod (a node loss or a notice takes a node that holds one group
and not the lighthouse, `node_loss_victim`) once the job has committed the event's steps
since the event before (the job trains on meanwhile: where the other modes' attempts
restart, (d)'s steps go on) and the replacement that event called for has committed a
step; an event that finds the job done is recorded as not landed. Each event's
survivors' stall (the longest gap in the other group's step log from the event to the
replacement's first step) and the replacement's parts (the kubelet's process start, the
trainer's ready, joining and healed lines, its first step line) are recorded; a whole-job
restart instead is recorded as such.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from functools import partial
from typing import Any

from bench.goodput_groups import (
    HEALED_MARK,
    HEARTBEAT_MS,
    JOINING_MARK,
    MIN_GROUPS,
    REPLICA_GROUPS,
    GroupStamps,
    hit_group,
    longest_gap,
    node_loss_victim,
    replacement_parts,
)
from bench.goodput_trace import (
    CRASH,
    EVICTION,
    NODE_LOSS,
    NOTICE_TAINT,
    NOTICE_THEN_LOSS,
    Event,
)
from bench.local_loop import LocalLoop, StepClock
from bench.recovery_parts import READY_MARK, marked_time
from bench.recovery_watch import KubeletLog
from lazarus_devstack.harness import LosableNode, node_ready, wait_for

LABEL_JOB, LABEL_INDEX = "lazarus.dev/job", "lazarus.dev/index"
LABEL_ATTEMPT, LABEL_GENERATION = "lazarus.dev/attempt", "lazarus.dev/generation"
LABEL_ROLE = "lazarus.dev/role"


def as_groups(spec: dict[str, Any], container: dict[str, Any], name: str) -> None:
    """Turn one of bench.goodput's job specs into mode (d)'s, in place."""
    spec["replicas"] = REPLICA_GROUPS
    spec["faultTolerance"] = {
        "replicaGroups": REPLICA_GROUPS,
        "minReplicaGroups": MIN_GROUPS,
        "heartbeatTimeoutMilliseconds": HEARTBEAT_MS,
        # Every pod of the local loop is 127.0.0.1: another job's lighthouse on the
        # default port would take this job's groups into its quorum.
        "lighthousePort": free_port(),
    }
    args = container["args"]
    batch = 8 // REPLICA_GROUPS  # the reference trainer's default, shared out
    container["args"] = [*args, "--batch-size", str(batch)]
    groups_only = {
        "matchExpressions": [
            {"key": LABEL_JOB, "operator": "In", "values": [name]},
            {"key": LABEL_ROLE, "operator": "DoesNotExist"},
        ]
    }
    term = {"labelSelector": groups_only, "topologyKey": "kubernetes.io/hostname"}
    spec["template"]["spec"]["affinity"] = {
        "podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [term]}
    }


class GroupEvents:
    """Mode (d)'s trace on one job: `run` disrupts, `events` holds what each cost."""

    def __init__(
        self,
        loop: LocalLoop,
        kubelet_log: KubeletLog,
        lose: Callable[[LosableNode], None],
        taint: Callable[[str, list[dict[str, str]] | None], None],
        timeout: float,
        notice: float,
        steps: int,
        phase: Callable[[str], str | None],
    ) -> None:
        self.loop, self.kubelet_log, self.lose, self.taint = loop, kubelet_log, lose, taint
        self.timeout, self.notice, self.steps, self.phase = timeout, notice, steps, phase
        self._asked = (0.0, False)  # when the job's phase was last read, and if it had ended
        self.mono_to_epoch = time.time() - time.monotonic()

    def current(self, job: str) -> dict[int, Any]:
        """Each group's current pod (the newest attempt's newest generation, not deleting),
        and the lighthouse under key -1."""
        pods = self.loop.core.list_namespaced_pod(
            self.loop.ns, label_selector=f"{LABEL_JOB}={job}"
        ).items
        out: dict[int, Any] = {}
        for pod in pods:
            labels = pod.metadata.labels or {}
            if pod.metadata.deletion_timestamp is not None or pod.status.phase != "Running":
                continue
            key = -1 if LABEL_ROLE in labels else int(labels.get(LABEL_INDEX, 0))
            rank = (int(labels.get(LABEL_ATTEMPT, 0)), int(labels.get(LABEL_GENERATION, 0)))
            if key not in out or rank > out[key][0]:
                out[key] = (rank, pod)
        return {k: v[1] for k, v in out.items()}

    def run(self, job: str, trace: list[Event], clock: StepClock, t0: float) -> list[Any]:
        events: list[dict[str, Any]] = []
        since = t0  # the event before (monotonic)
        for i, ev in enumerate(trace):
            wait_for(
                partial(self.due, job, clock, since, ev.after_steps),
                self.timeout,
                f"{job}: {ev.after_steps} steps since the event before",
                every=0.02,
            )
            if clock.last_step() >= self.steps or self.ended(job):
                events.append({"kind": ev.kind, "landed": False})  # the job is done
                continue
            since = time.monotonic()
            at = self.disrupt(ev, i, job, clock, t0)
            events.append(at)
            print(f"  {job}: {at}", flush=True)
        return events

    def due(self, job: str, clock: StepClock, since: float, steps: int) -> bool:
        """The job committed `steps` steps since `since` (monotonic), or it ended."""
        done = clock.last_step() >= self.steps or self.ended(job)
        return done or clock.steps_since(clock.newest(), since) >= steps

    def ended(self, job: str) -> bool:
        """The job Succeeded or Failed (its phase read at most once a second)."""
        at, done = self._asked
        if time.monotonic() - at > 1.0:
            done = self.phase(job) in ("Succeeded", "Failed")
            self._asked = (time.monotonic(), done)
        return done

    def disrupt(self, ev: Event, i: int, job: str, clock: StepClock, t0: float) -> dict[str, Any]:
        pods = self.current(job)
        groups = {g: p for g, p in pods.items() if g >= 0}
        lighthouse = pods[-1].spec.node_name if -1 in pods else None
        wanted, shared = hit_group(i), list[str]()
        if ev.kind in (NODE_LOSS, NOTICE_THEN_LOSS):
            node_of = {g: p.spec.node_name for g, p in groups.items()}
            wanted, shared = node_loss_victim(wanted, node_of, lighthouse)
        victim = groups[wanted]
        survivors = [p.metadata.name for g, p in groups.items() if g != wanted]
        node = self.loop.nodes[victim.spec.node_name]
        attempt = clock.newest()
        at: dict[str, Any] = {"kind": ev.kind, "group": wanted, "pod": victim.metadata.name}
        at.update(t=round(time.monotonic() - t0, 2), shared_node_with=shared)
        disrupted = time.time()
        if ev.kind == EVICTION:
            self.loop.evict(victim.metadata.name)
        elif ev.kind == CRASH:
            self.loop.crash(victim.metadata.name)
        elif ev.kind == NOTICE_THEN_LOSS:
            self.taint(node.name, [{"key": NOTICE_TAINT, "effect": "NoSchedule"}])
            time.sleep(self.notice)
            disrupted = time.time()
            self.lose(node)
        elif ev.kind == NODE_LOSS:
            self.lose(node)
        else:
            raise ValueError(f"mode (d) takes no {ev.kind} event")
        new = next_generation(victim)
        came = partial(self.recovered, clock, new, attempt)
        wait_for(came, self.timeout, f"{job}: {new} training", every=0.02)
        if ev.kind in (NODE_LOSS, NOTICE_THEN_LOSS):
            self.taint(node.name, None)
            node.start()
            wait_for(lambda: node_ready(self.loop.core, node.name), 60, f"{node.name} Ready")
        at.update(self.measure(clock, new, attempt, survivors, disrupted))
        return at

    def recovered(self, clock: StepClock, new: str, attempt: int) -> bool:
        return bool(clock.pod_times(new)) or clock.newest() > attempt

    def measure(
        self, clock: StepClock, new: str, attempt: int, survivors: list[str], disrupted: float
    ) -> dict[str, Any]:
        """The stall of each survivor and the replacement's parts (or the whole restart)."""
        mono = disrupted - self.mono_to_epoch
        times = clock.pod_times(new)
        if not times:  # the operator restarted the whole job instead
            first = clock.first_seen(clock.newest()) or time.monotonic()
            return {"whole_restart": True, "restart_gap_s": round(first - mono, 2)}
        first = times[0]
        stalls = [longest_gap(clock.pod_times(s), mono, first) for s in survivors]
        log = (self.loop.pods / f"{self.loop.ns}_{new}" / "log").read_text(errors="replace")
        lines = log.splitlines()
        stamps = GroupStamps(
            disrupted=disrupted,
            started=self.kubelet_log.first(f"{self.loop.ns}/{new}: started pid"),
            ready=marked_time(lines, READY_MARK),
            joining=marked_time(lines, JOINING_MARK),
            healed=marked_time(lines, HEALED_MARK),
            first_step=first + self.mono_to_epoch,
        )
        return {
            "replacement": new,
            "stall_s": [None if s is None else round(s, 3) for s in stalls],
            "replacement_s": replacement_parts(stamps),
        }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def next_generation(pod: Any) -> str:
    """The name the operator gives the replacement of group pod `pod` (builders.pod_name)."""
    labels = pod.metadata.labels or {}
    job, attempt, index = labels[LABEL_JOB], labels[LABEL_ATTEMPT], labels[LABEL_INDEX]
    generation = int(labels.get(LABEL_GENERATION, 0)) + 1
    return f"{job}-a{attempt}-{index}-r{generation}"
