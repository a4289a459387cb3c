"""The ACTIVE stage of a fault-tolerant job (spec.faultTolerance): survivors keep training.

Each pod is one replica group; torchft's lighthouse forms each step's quorum of the live
ones (docs/fault-tolerance.md). A group's end that a replacement can answer (a crash, an
OOM kill, a lost node, a disruption) is answered by one: the same attempt, the group's
next generation (`<job>-a<N>-<i>-r<g>`, LAZARUS_FT_REPLACEMENT=1), which takes the live
state from a peer; the other groups never stop. Everything else goes to the whole-gang
path (`failure_policy`): a permanent error, a replacement that found no peer (exit 76),
fewer than `minReplicaGroups` groups left, a lighthouse lost on a lost node while a
minority could form a quorum (two lighthouses could run), or more failures replaced
than `maxFailures` (a crash loop is the budgets' to end).

The lighthouse pod has one name per attempt, so a new one is created only once the old
one is gone: never two at once from the API's view. Pure; tables in
tests/operator/test_groups.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from lazarus_contract.ft import EXIT_FT_NO_PEER

from .builders import ResumePoint, build_pod, pod_name
from .classify import Cause, PodEnd, node_is_lost
from .failure_policy import FAILURE_CAUSES, recorded
from .groupstatus import LastReplacement
from .jobstatus import JobStatus
from .lighthouse import build_lighthouse_pod, is_lighthouse
from .pods import deleting, end_of, name, node_name, node_of, vanished
from .teardown import teardown
from .vocabulary import CreatePod, Decision, Facts

REPLACEABLE = frozenset({Cause.FAILED, Cause.OOM_KILLED, Cause.DISRUPTED, Cause.NODE_LOST})


@dataclass
class Plan:
    """The attempt's pods sorted for a cycle, and what its group ends call for."""

    groups: list[dict[str, Any]] = field(default_factory=list)  # each group's current pod
    stale: list[dict[str, Any]] = field(default_factory=list)  # to delete
    lighthouse: list[dict[str, Any]] = field(default_factory=list)  # present, ended or not
    lighthouse_lost: PodEnd | None = None  # gone with a lost node; not replaceable safely
    replace: list[tuple[int, PodEnd]] = field(default_factory=list)  # (group, its end)
    ends: list[PodEnd] = field(default_factory=list)  # what decides the attempt

    def bad(self) -> list[PodEnd]:
        out = [e for e in self.ends if e.cause != Cause.SUCCEEDED]
        return out + ([self.lighthouse_lost] if self.lighthouse_lost else [])


def expected(f: Facts, st: JobStatus) -> dict[str, int]:
    """Each group's current pod name -> its group."""
    n, attempt = f.spec.replicas, st.attempt
    return {pod_name(f.job.name, attempt, g, st.groups.generation(g)): g for g in range(n)}


def plan(f: Facts, st: JobStatus, current: list[dict[str, Any]]) -> Plan:
    ft = f.spec.fault_tolerance
    assert ft is not None
    out, names = Plan(), expected(f, st)
    for pod in current:
        if is_lighthouse(pod):
            out.lighthouse.append(pod)
            if end_of(f, pod) is not None or deleting(pod):
                out.stale.append(pod)
        elif name(pod) in names:
            out.groups.append(pod)
        else:  # an earlier generation of its group (or a name this attempt never made)
            out.stale.append(pod)
    present = {name(p) for p in out.groups}
    for pod in out.groups:
        if (end := end_of(f, pod)) is not None:
            out.ends.append(end)
    for want in names:
        if want not in present:
            out.ends.append(vanished(want, f.now))
    for pod in out.lighthouse:
        node, known = node_of(f, pod)
        lost = known and node_is_lost(node, f.now, f.spec.node_loss_timeout_seconds)
        if ft.below_majority and lost:
            # It may still run behind a partition: a second one could form a second
            # quorum of a minority. A new attempt fences the old one's checkpoints.
            msg = "the lighthouse's node is lost and minReplicaGroups is below a majority"
            where = node_name(pod)
            out.lighthouse_lost = PodEnd(
                Cause.NODE_LOST, "LighthouseLost", name(pod), where, None, msg, None, f.now
            )
    bad = [e for e in out.ends if e.cause != Cause.SUCCEEDED]
    if bad and out.lighthouse_lost is None and _replaceable(f, st, bad):
        out.replace = [(names[e.pod], e) for e in bad]
        out.ends = [e for e in out.ends if e.cause == Cause.SUCCEEDED]
    return out


def _replaceable(f: Facts, st: JobStatus, bad: list[PodEnd]) -> bool:
    ft = f.spec.fault_tolerance
    assert ft is not None
    if any(e.cause not in REPLACEABLE or e.exit_code == EXIT_FT_NO_PEER for e in bad):
        return False
    if ft.groups - len(bad) < ft.min_groups:
        return False  # too few left to form a quorum: the whole gang restarts
    failures = st.groups.replacements.count(*FAILURE_CAUSES)
    failures += sum(e.cause in FAILURE_CAUSES for e in bad)
    return failures <= f.spec.failure_policy.max_failures


def tend(f: Facts, d: Decision, current: list[dict[str, Any]]) -> Plan:
    """Delete stale pods, keep the lighthouse, replace the groups that ended; returns
    the plan, whose `ends` decide the attempt as a gang's would."""
    st = d.state
    p = plan(f, st, current)
    if p.bad():
        return p  # the whole gang goes: failure_policy tears down every pod of the attempt
    for group, end in p.replace:
        _replace(f, d, group, end)
    replaced = {e.pod for _, e in p.replace}
    ended = p.stale + [pod for pod in p.groups if name(pod) in replaced]
    if ended:
        teardown(f, d, ended)
    if not p.lighthouse:
        st.groups.lighthouse_restarts += 1
        d.actions.append(CreatePod(build_lighthouse_pod(f.job, f.spec, st.attempt)))
        d.event("Warning", "LighthouseReplaced", f"attempt {st.attempt}: lighthouse recreated")
    return p


def _replace(f: Facts, d: Decision, group: int, end: PodEnd) -> None:
    st, ft = d.state, f.spec.fault_tolerance
    assert ft is not None
    gen = st.groups.replace(group, ft.groups)
    st.groups.replacements.count_end(end.cause)
    st.groups.replacements.count_relaunch()
    st.groups.last_replacement = LastReplacement(group, gen, recorded(st.attempt, end))
    r = st.resumed_from
    resume = ResumePoint(r.value, r.name, r.step) if r else ResumePoint("")
    pod = build_pod(f.job, f.spec, st.attempt, group, resume, generation=gen)
    d.actions.append(CreatePod(pod))
    why = f"{end.cause} ({end.reason})" + (
        f", exit code {end.exit_code}" if end.exit_code is not None else ""
    )
    d.event(
        "Warning",
        "GroupReplaced",
        f"replica group {group}: pod {end.pod} ended, {why}; replaced by"
        f" {pod['metadata']['name']}, which takes the live state from a peer",
    )
