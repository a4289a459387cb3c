"""The decision core: given the job, its pods, their nodes and the checkpoint
store's answer, what happens next? Pure; the kopf edge gathers the facts and
carries the actions out, writing the status first and the events last.

One cycle, in order:
  finished  -> clean up, TTL;
  suspended -> stop the pods gracefully (they save on SIGTERM);
  attempt N active -> create missing pods, ask for checkpoint-now on doomed
      nodes, classify pod ends; one end ends the attempt: charge the budget,
      record the cause, delete the rest of the gang;
  restart pending  -> wait until the old pods are gone (force-delete the stuck
      ones), wait out the backoff, choose the resume point, launch N+1.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from lazarus_contract import ANNOTATION_CHECKPOINT_NOW, RESUME_AUTO

from . import status as s
from .builders import LABEL_ATTEMPT, JobRef, ResumePoint, build_attempt, build_service, pod_name
from .classify import (
    DISRUPTION_CAUSES,
    Cause,
    PodEnd,
    classify,
    node_is_lost,
    node_lost_since,
    parse_time,
)
from .lostwork import LostWork, lost_work, step_rate
from .spec import JobSpec

ANNOTATION_CHECKPOINT_NOW_TAINT = "lazarus.dev/checkpoint-now-taint"
STORAGE_RETRY_S = 10.0

# restarts are counted by cause under these status keys
RESTART_KEYS = {
    Cause.FAILED: "failed",
    Cause.OOM_KILLED: "oomKilled",
    Cause.DISRUPTED: "disrupted",
    Cause.NODE_LOST: "nodeLost",
}
FAILURE_KEYS = ("failed", "oomKilled")
DISRUPTION_KEYS = ("disrupted", "nodeLost")


# --- facts ------------------------------------------------------------------------
@dataclass(frozen=True)
class Checkpoint:
    name: str
    step: int
    attempt: int
    uri: str
    created: str | None = None
    extra: dict[str, Any] = field(default_factory=dict, compare=False)  # the manifest's


@dataclass(frozen=True)
class Selection:
    """The store's answer: newest valid checkpoint in this attempt's lineage."""

    chosen: Checkpoint | None
    skipped: tuple[tuple[str, str], ...] = ()
    # The fence log is per checkpoint root, not per job object: attempt numbers
    # are unique per root, so a job deleted and re-created on the same root
    # continues them (its first attempt fences the old one's pods and resumes in
    # its lineage), and two jobs sharing a root never write the same names.
    next_attempt: int = 0
    # A filesystem root: the operator cannot see the pods' volume, so the trainer
    # selects (resume "auto") and writes the fence record (contract section 8).
    delegated: bool = False


@dataclass(frozen=True)
class StorageProblem:
    reason: str  # one of the status.R_* storage reasons
    message: str


@dataclass(frozen=True)
class Facts:
    job: JobRef
    spec: JobSpec
    status: dict[str, Any]
    pods: list[dict[str, Any]]
    nodes: dict[str, dict[str, Any]]  # existing nodes by name
    now: datetime
    selection: Selection | None = None
    storage_problem: StorageProblem | None = None
    # pod name -> the last step its trainer reported, from every pod event seen (a
    # deleted pod's final message may never show in a listing: it is removed at once).
    seen_steps: Mapping[str, int] = field(default_factory=dict)


# --- actions ------------------------------------------------------------------------
@dataclass(frozen=True)
class RecordAttempt:
    attempt: int
    resume_from: str | None
    resume_step: int


@dataclass(frozen=True)
class CreateService:
    manifest: dict[str, Any]


@dataclass(frozen=True)
class CreatePod:
    manifest: dict[str, Any]


@dataclass(frozen=True)
class DeletePod:
    name: str
    force: bool = False  # grace period 0: the node will never confirm


@dataclass(frozen=True)
class AnnotatePod:
    name: str
    annotations: dict[str, str]


@dataclass(frozen=True)
class Event:
    type: str  # Normal | Warning
    reason: str
    message: str


@dataclass(frozen=True)
class DeleteJob:
    pass


Action = RecordAttempt | CreateService | CreatePod | DeletePod | AnnotatePod | Event | DeleteJob


@dataclass
class Decision:
    status: dict[str, Any]
    actions: list[Action] = field(default_factory=list)
    requeue_after: float | None = None  # seconds until something is due (backoff, timeouts)
    needs_selection: bool = False  # call again with `Facts.selection` filled in
    waiting: str = ""  # why we are waiting, for the TemporaryError message

    def requeue(self, seconds: float, why: str) -> None:
        seconds = max(0.05, seconds)
        if self.requeue_after is None or seconds < self.requeue_after:
            self.requeue_after, self.waiting = seconds, why

    @property
    def events(self) -> list[Event]:
        return [a for a in self.actions if isinstance(a, Event)]


# --- helpers ------------------------------------------------------------------------
def pod_attempt(pod: dict[str, Any]) -> int:
    try:
        return int(((pod.get("metadata") or {}).get("labels") or {}).get(LABEL_ATTEMPT, "0"))
    except ValueError:
        return 0


def _name(pod: dict[str, Any]) -> str:
    return str((pod.get("metadata") or {}).get("name", ""))


def _deleting(pod: dict[str, Any]) -> bool:
    return bool((pod.get("metadata") or {}).get("deletionTimestamp"))


def _node_of(f: Facts, pod: dict[str, Any]) -> tuple[dict[str, Any] | None, bool]:
    node_name = (pod.get("spec") or {}).get("nodeName")
    if not node_name:
        return None, False
    return f.nodes.get(node_name), True


def _classify(f: Facts, pod: dict[str, Any]) -> PodEnd | None:
    node, known = _node_of(f, pod)
    return classify(
        pod,
        node,
        now=f.now,
        node_loss_timeout_s=f.spec.node_loss_timeout_seconds,
        permanent_exit_codes=f.spec.failure_policy.permanent_exit_codes,
        node_known=known,
    )


def _primary(ends: list[PodEnd]) -> PodEnd:
    """The end that explains the attempt: a permanent error anywhere wins; then a
    disruption (the others' crashes usually follow it); then the earliest failure."""
    order = {
        Cause.PERMANENT: 0,
        Cause.NODE_LOST: 1,
        Cause.DISRUPTED: 2,
        Cause.OOM_KILLED: 3,
        Cause.FAILED: 4,
    }
    return min(ends, key=lambda e: (order.get(e.cause, 9), e.time, e.pod))


def _finish(st: dict[str, Any], now: datetime, ok: bool, reason: str, message: str) -> None:
    st["phase"] = s.SUCCEEDED if ok else s.FAILED
    st["finishedAt"] = s.iso(now)
    st.pop("pendingRestart", None)
    s.set_condition(st, s.COND_SUCCEEDED if ok else s.COND_FAILED, True, reason, message, now=now)
    s.set_condition(st, s.COND_RUNNING, False, reason, message, now=now)
    s.set_condition(st, s.COND_RESTARTING, False, reason, message, now=now)


def _teardown(f: Facts, d: Decision, pods: list[dict[str, Any]]) -> bool:
    """Delete `pods` gracefully, force-delete stuck ones; True when all are gone."""
    for pod in pods:
        name = _name(pod)
        node, known = _node_of(f, pod)
        if known and node_is_lost(node, f.now, f.spec.node_loss_timeout_seconds):
            # A deleted or lost node's kubelet will never run the SIGTERM nor confirm
            # the deletion: waiting only delays the next attempt.
            d.actions.append(DeletePod(name, force=True))
            continue
        if not _deleting(pod):
            # Graceful: the trainer gets SIGTERM and its grace period to save.
            d.actions.append(DeletePod(name))
            d.requeue(max(1.0, f.spec.stuck_terminating_timeout_seconds), f"pod {name} stopping")
            continue
        meta = pod.get("metadata") or {}
        deadline = parse_time(meta.get("deletionTimestamp"))
        assert deadline is not None
        force_at = deadline + timedelta(seconds=f.spec.stuck_terminating_timeout_seconds)
        if f.now >= force_at:
            d.actions.append(DeletePod(name, force=True))
        else:
            d.requeue((force_at - f.now).total_seconds(), f"pod {name} terminating")
    return not pods


def _checkpoint_now(f: Facts, d: Decision, pods: list[dict[str, Any]]) -> None:
    """Ask pods on nodes that announce their own termination to save now."""
    wanted = set(f.spec.disruption_taints)
    for pod in pods:
        if _deleting(pod):
            continue
        node, _ = _node_of(f, pod)
        taints = [t for t in ((node or {}).get("spec") or {}).get("taints") or []]
        keys = sorted({str(t.get("key")) for t in taints if t.get("key") in wanted})
        if not keys:
            continue
        ann = (pod.get("metadata") or {}).get("annotations") or {}
        done = set(str(ann.get(ANNOTATION_CHECKPOINT_NOW_TAINT, "")).split(","))
        if set(keys) <= done:
            continue
        node_name = (pod.get("spec") or {}).get("nodeName")
        d.actions.append(
            AnnotatePod(
                _name(pod),
                {
                    ANNOTATION_CHECKPOINT_NOW: f.now.isoformat(timespec="microseconds"),
                    ANNOTATION_CHECKPOINT_NOW_TAINT: ",".join(sorted((done | set(keys)) - {""})),
                },
            )
        )
        d.actions.append(
            Event(
                "Normal",
                "CheckpointRequested",
                f"node {node_name} has taint {', '.join(keys)}: asked pod {_name(pod)} to save now",
            )
        )


def _apply_selection(f: Facts, st: dict[str, Any], d: Decision) -> None:
    """Record the store's answer (latest checkpoint, storage condition)."""
    if f.storage_problem is not None:
        p = f.storage_problem
        old = s.get_condition(st, s.COND_STORAGE)
        if not old or old.get("reason") != p.reason or old.get("status") != "False":
            d.actions.append(Event("Warning", p.reason, p.message))
        s.set_condition(st, s.COND_STORAGE, False, p.reason, p.message, now=f.now)
        return
    if f.selection is None:
        return
    if f.selection.delegated:
        msg = "filesystem root: the trainer selects the checkpoint and fences attempts"
        s.set_condition(st, s.COND_STORAGE, True, s.R_STORAGE_DELEGATED, msg, now=f.now)
        return
    s.set_condition(
        st, s.COND_STORAGE, True, s.R_STORAGE_OK, "checkpoint store reachable", now=f.now
    )
    ck = f.selection.chosen
    if ck is not None:
        prev = st.get("latestCheckpoint") or {}
        st["latestCheckpoint"] = {
            "name": ck.name,
            "uri": ck.uri,
            "step": ck.step,
            "attempt": ck.attempt,
        }
        if ck.created:
            st["latestCheckpoint"]["time"] = ck.created
        if prev.get("attempt") == ck.attempt == st.get("attempt") and ck.name != prev.get("name"):
            # Two checkpoints of the running attempt: its step rate, for estimating
            # what a node loss (which reports nothing) costs.
            rate = step_rate(
                int(prev.get("step", -1)),
                parse_time(prev.get("time")),
                ck.step,
                parse_time(ck.created),
            )
            if rate is not None:
                st["stepRate"] = round(rate, 6)


def _history_end(st: dict[str, Any], attempt: int, end: PodEnd, now: datetime) -> None:
    for h in st.get("history") or []:
        if h.get("attempt") == attempt:
            h.update(endedAt=s.iso(now), cause=str(end.cause), reason=end.reason)


def _launch(f: Facts, st: dict[str, Any], d: Decision, why: str) -> None:
    """Launch attempt N+1 (needs the store's selection)."""
    spec, now = f.spec, f.now
    first = not st.get("attempt")
    attempt = int(st.get("attempt") or 0) + 1
    # Always consult the store before launching: it proves the storage works
    # (the trainer needs it too) and the fence record needs it.
    if f.selection is None and f.storage_problem is None:
        d.needs_selection = True
        return
    _apply_selection(f, st, d)
    if f.storage_problem is not None:
        # Waiting beats launching blind: the trainer could not save either.
        d.requeue(STORAGE_RETRY_S, f"storage: {f.storage_problem.message}")
        return
    assert f.selection is not None
    attempt = max(attempt, f.selection.next_attempt)
    ck = f.selection.chosen
    skipped = f.selection.skipped
    if first and spec.checkpoint.resume == "none":
        resume, skipped = ResumePoint(""), ()
    elif first and spec.checkpoint.resume == "explicit":
        assert spec.checkpoint.resume_from is not None
        resume, skipped = ResumePoint(spec.checkpoint.resume_from, spec.checkpoint.resume_from), ()
    elif f.selection.delegated:
        resume = ResumePoint(RESUME_AUTO)
    else:
        resume = ResumePoint(ck.name, ck.name, ck.step) if ck else ResumePoint("")
    pending = st.pop("pendingRestart", None) or {}
    lost = LostWork(0, 0.0, False) if first else _lost(f, st, pending, resume, ck)
    st["lostSteps"] = int(st.get("lostSteps") or 0) + lost.steps
    st["lostSeconds"] = round(float(st.get("lostSeconds") or 0) + lost.seconds, 3)
    st.update(
        attempt=attempt,
        attemptStartedAt=s.iso(now),
        launched=False,
        phase=s.PENDING,
        resumedFrom={"value": resume.value, "name": resume.name, "step": resume.step},
    )
    entry = {
        "attempt": attempt,
        "startedAt": s.iso(now),
        "resumedFrom": resume.name,
        "resumeStep": resume.step,
        "lostSteps": lost.steps,
        "lostSeconds": round(lost.seconds, 3),
        "lostEstimated": lost.estimated,
    }
    st["history"] = [*(st.get("history") or []), entry][-s.HISTORY_LIMIT :]
    s.set_condition(
        st, s.COND_RESTARTING, False, s.R_LAUNCHING, f"launching attempt {attempt}", now=now
    )
    s.set_condition(
        st, s.COND_RUNNING, False, s.R_LAUNCHING, f"launching attempt {attempt}", now=now
    )
    if spec.suspend is False:
        s.set_condition(st, s.COND_SUSPENDED, False, s.R_RESUMED, "not suspended", now=now)
    _create(f, d, attempt, resume, record=not f.selection.delegated)
    if not first and resume.name is None and not f.selection.delegated:
        d.actions.append(
            Event(
                "Warning",
                "NoValidCheckpoint",
                f"no valid checkpoint in {spec.checkpoint.uri}: attempt {attempt} starts fresh",
            )
        )
    for name, reason in skipped:
        d.actions.append(Event("Warning", "CheckpointSkipped", f"skipped {name}: {reason}"))
    where = f"{resume.name} (step {resume.step})" if resume.name else "scratch"
    d.actions.append(
        Event(
            "Normal",
            "Launched",
            f"attempt {attempt} ({why}) resumes from {where}; {lost.describe()}",
        )
    )


def _wake_at_node_loss(f: Facts, d: Decision, pods: list[dict[str, Any]]) -> None:
    """A node NotReady but not yet past nodeLossTimeoutSeconds: decide again the
    moment it is (no event will say so), so a lost node costs one timeout."""
    for pod in pods:
        node, known = _node_of(f, pod)
        since = node_lost_since(node, f.now) if known and node is not None else None
        if since is not None:
            due = since + timedelta(seconds=f.spec.node_loss_timeout_seconds)
            if due > f.now:
                node_name = (pod.get("spec") or {}).get("nodeName")
                d.requeue((due - f.now).total_seconds(), f"node {node_name} not Ready")


def _attempt_of(pod: str) -> int:
    """N of a pod named `<job>-a<N>-<index>` (0 if not ours)."""
    parts = pod.rsplit("-", 2)
    return int(parts[1][1:]) if len(parts) == 3 and parts[1][1:].isdigit() else 0


def _note_reported_steps(f: Facts, pending: dict[str, Any], pods: list[dict[str, Any]]) -> None:
    """The ended attempt's other pods report their last step as they stop (their
    SIGTERM saves may fail): keep the highest, so the booking is the truth."""
    a = int(pending.get("attempt", 0))
    steps = [v for k, v in f.seen_steps.items() if _attempt_of(k) == a]
    for pod in pods:
        if pod_attempt(pod) == a and (e := _classify(f, pod)) is not None and e.step is not None:
            steps.append(e.step)
    if steps:
        pending["lastStep"] = max(int(pending.get("lastStep", -1)), *steps)


def _lost(
    f: Facts, st: dict[str, Any], pending: dict[str, Any], resume: ResumePoint, ck: Any
) -> LostWork:
    """Book what the ended attempt lost against the point the next one resumes from."""
    if pending:
        _note_reported_steps(f, pending, f.pods)
    last = int(pending.get("lastStep", -1))
    latest_ck = st.get("latestCheckpoint") or {}
    latest = int(latest_ck.get("step", -1))
    started = parse_time(st.get("attemptStartedAt"))
    if not pending:  # resumed after suspend: a graceful stop that saved
        last_step: int | None = max(latest, resume.step, 0)
    else:
        last_step = max(last, latest) if last >= 0 else None
    rate = float(st["stepRate"]) if st.get("stepRate") else None
    if rate is None and latest_ck.get("attempt") == pending.get("attempt"):
        # One checkpoint of the ended attempt: its rate since the attempt started.
        prev_step = int((st.get("resumedFrom") or {}).get("step", -1))
        rate = step_rate(max(prev_step, 0), started, latest, parse_time(latest_ck.get("time")))
    resume_time = parse_time(ck.created) if ck is not None and ck.name == resume.name else None
    lost = lost_work(
        last_step=last_step,
        resume_step=resume.step,
        resume_time=resume_time,
        attempt_start=started,
        ended_at=parse_time(pending.get("endedAt")) or f.now,
        rate=rate,
    )
    if lost.estimated and latest > max(resume.step, 0) + lost.steps:
        # A checkpoint the next attempt cannot use proves at least this much.
        lost = LostWork(latest - max(resume.step, 0), lost.seconds, True)
    return lost


def _create(f: Facts, d: Decision, attempt: int, resume: ResumePoint, *, record: bool) -> None:
    existing = {_name(p) for p in f.pods}
    if record:
        d.actions.append(RecordAttempt(attempt, resume.name, resume.step))
    d.actions.append(CreateService(build_service(f.job, f.spec.master_port)))
    for pod in build_attempt(f.job, f.spec, attempt, resume):
        if pod["metadata"]["name"] not in existing:
            d.actions.append(CreatePod(pod))


def _resume_point(st: dict[str, Any]) -> ResumePoint:
    r = st.get("resumedFrom") or {}
    return ResumePoint(str(r.get("value") or ""), r.get("name"), int(r.get("step", -1)))


# --- the core ----------------------------------------------------------------------
def decide(f: Facts) -> Decision:
    st = copy.deepcopy(f.status)
    d = Decision(status=st)
    spec, now = f.spec, f.now
    attempt = int(st.get("attempt") or 0)
    phase = st.get("phase")
    if f.selection is not None or f.storage_problem is not None:
        _apply_selection(f, st, d)

    if phase in s.FINISHED:
        # Failed: nothing may keep running. Succeeded: leave finished pods for their logs.
        _teardown(
            f, d, f.pods if phase == s.FAILED else [p for p in f.pods if _classify(f, p) is None]
        )
        ttl = spec.ttl_seconds_after_finished
        finished = parse_time(st.get("finishedAt")) or now
        if ttl is not None:
            due = finished + timedelta(seconds=ttl)
            if now >= due:
                d.actions.append(DeleteJob())
            else:
                d.requeue((due - now).total_seconds(), "TTL after finish")
        return d

    if spec.suspend:
        st.pop("pendingRestart", None)
        gone = _teardown(f, d, f.pods)
        old = s.get_condition(st, s.COND_SUSPENDED)
        settled = (old or {}).get("reason") == s.R_SUSPENDED
        if gone and not settled and attempt and f.selection is None and f.storage_problem is None:
            # The pods saved on SIGTERM: status names that checkpoint, not an older one.
            d.needs_selection = True
            return d
        st["phase"] = s.SUSPENDED
        reason = s.R_SUSPENDED if gone else s.R_SUSPENDING
        msg = "suspended; no pods" if gone else "stopping pods (they save on SIGTERM)"
        if not old or old.get("reason") != reason:
            d.actions.append(Event("Normal", reason, msg))
        s.set_condition(st, s.COND_SUSPENDED, True, reason, msg, now=now)
        s.set_condition(st, s.COND_RUNNING, False, reason, msg, now=now)
        return d

    older = [p for p in f.pods if pod_attempt(p) < attempt or attempt == 0]
    current = [p for p in f.pods if pod_attempt(p) == attempt and attempt > 0]

    if attempt == 0 or phase == s.SUSPENDED:
        if _teardown(f, d, older + current):
            _launch(f, st, d, "start" if attempt == 0 else "resumed after suspend")
        return d

    if st.get("pendingRestart"):
        pending = st["pendingRestart"]
        _note_reported_steps(f, pending, older + current)
        if not _teardown(f, d, older + current):
            s.set_condition(
                st, s.COND_RESTARTING, True, s.R_TEARDOWN, "waiting for pods to stop", now=now
            )
            return d
        not_before = parse_time(pending.get("notBefore")) or now
        if now < not_before:
            s.set_condition(
                st,
                s.COND_RESTARTING,
                True,
                s.R_BACKOFF,
                f"relaunch at {s.iso(not_before)}",
                now=now,
            )
            d.requeue((not_before - now).total_seconds(), "backoff")
            return d
        _launch(f, st, d, f"restart after {pending.get('cause')}")
        return d

    # attempt N is active
    if older:
        _teardown(f, d, older)
    if not st.get("launched"):
        if len(current) >= spec.replicas:
            st["launched"] = True
        else:
            _create(f, d, attempt, _resume_point(st), record=True)
            return d
    _checkpoint_now(f, d, current)
    _wake_at_node_loss(f, d, current)
    ends = [e for e in (_classify(f, p) for p in current) if e is not None]
    present = {_name(p) for p in current}
    for i in range(spec.replicas):
        name = pod_name(f.job.name, attempt, i)
        if name not in present:
            ends.append(
                PodEnd(Cause.DISRUPTED, "PodDeleted", name, None, None, "pod vanished", None, now)
            )
    bad = [e for e in ends if e.cause != Cause.SUCCEEDED]
    if not bad:
        if len(ends) == spec.replicas:
            _finish(st, now, True, s.R_COMPLETED, f"attempt {attempt} completed")
            d.actions.append(
                Event("Normal", s.R_COMPLETED, f"training completed in attempt {attempt}")
            )
            return d
        running = all((p.get("status") or {}).get("phase") == "Running" for p in current)
        st["phase"] = s.RUNNING if running else s.PENDING
        s.set_condition(
            st,
            s.COND_RUNNING,
            running,
            s.R_ALL_RUNNING if running else s.R_PODS_PENDING,
            f"attempt {attempt}: {len(current)} pods",
            now=now,
        )
        return d
    return _end_attempt(f, st, d, attempt=attempt, bad=bad, current=current)


def _end_attempt(
    f: Facts,
    st: dict[str, Any],
    d: Decision,
    *,
    attempt: int,
    bad: list[PodEnd],
    current: list[dict[str, Any]],
) -> Decision:
    spec, now = f.spec, f.now
    end = _primary(bad)
    policy = spec.failure_policy
    failure = end.cause not in DISRUPTION_CAUSES and end.cause != Cause.PERMANENT
    if failure and f.selection is None and f.storage_problem is None:
        # Did this attempt commit anything? Only the store can say.
        d.needs_selection = True
        return d
    steps = [e.step for e in bad if e.step is not None]
    st["lastFailure"] = {
        "attempt": attempt,
        "cause": str(end.cause),
        "reason": end.reason,
        "pod": end.pod,
        "node": end.node,
        "exitCode": end.exit_code,
        "message": end.message,
        "time": s.iso(end.time),
    }
    _history_end(st, attempt, end, now)
    desc = f"attempt {attempt} ended: {end.cause} ({end.reason}) of pod {end.pod}"
    if end.exit_code is not None:
        desc += f", exit code {end.exit_code}"
    if end.node:
        desc += f" on node {end.node}"
    if end.cause == Cause.PERMANENT:
        _finish(st, now, False, s.R_PERMANENT, f"{desc}: {end.message}")
        d.actions.append(Event("Warning", s.R_PERMANENT, f"{desc}: not retried"))
        _teardown(f, d, current)
        return d
    # Ends by cause (the budgets count these); `total` counts relaunches only.
    restarts = dict(st.get("restarts") or {})
    key = RESTART_KEYS[end.cause]
    restarts[key] = int(restarts.get(key, 0)) + 1
    st["restarts"] = restarts
    delay = 0.0
    if failure:
        resumed = int((st.get("resumedFrom") or {}).get("step", -1))
        newest = f.selection.chosen.step if f.selection and f.selection.chosen else -1
        if f.storage_problem is None and newest > resumed:
            st["failuresWithoutProgress"] = 0
            st["consecutiveFailures"] = 1
        else:
            st["failuresWithoutProgress"] = int(st.get("failuresWithoutProgress") or 0) + 1
            st["consecutiveFailures"] = int(st.get("consecutiveFailures") or 0) + 1
        used = sum(int(restarts.get(k, 0)) for k in FAILURE_KEYS)
        if used > policy.max_failures:
            msg = f"{desc}; {used} failures exceed maxFailures={policy.max_failures}"
            _finish(st, now, False, s.R_BACKOFF_LIMIT, msg)
            d.actions.append(Event("Warning", s.R_BACKOFF_LIMIT, msg))
            _teardown(f, d, current)
            return d
        if st["failuresWithoutProgress"] >= policy.max_failures_without_progress:
            msg = (
                f"{desc}; {st['failuresWithoutProgress']} consecutive failures without a new"
                " checkpoint"
            )
            _finish(st, now, False, s.R_NO_PROGRESS, msg)
            d.actions.append(Event("Warning", s.R_NO_PROGRESS, msg))
            _teardown(f, d, current)
            return d
        delay = policy.backoff.delay(int(st["consecutiveFailures"]))
    else:
        used = sum(int(restarts.get(k, 0)) for k in DISRUPTION_KEYS)
        if policy.max_preemptions is not None and used > policy.max_preemptions:
            msg = f"{desc}; {used} disruptions exceed maxPreemptions={policy.max_preemptions}"
            _finish(st, now, False, s.R_PREEMPTION_LIMIT, msg)
            d.actions.append(Event("Warning", s.R_PREEMPTION_LIMIT, msg))
            _teardown(f, d, current)
            return d
    restarts["total"] = int(restarts.get("total", 0)) + 1
    not_before = now + timedelta(seconds=delay)
    reported = [*steps, *(v for k, v in f.seen_steps.items() if _attempt_of(k) == attempt)]
    st["pendingRestart"] = {
        "attempt": attempt,
        "cause": str(end.cause),
        # Milliseconds: lost seconds are the gap to the resume checkpoint's commit.
        "endedAt": min(end.time, now).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "notBefore": not_before.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "lastStep": max(reported) if reported else -1,
    }
    st["phase"] = s.RESTARTING
    s.set_condition(st, s.COND_RUNNING, False, str(end.cause), desc, now=now)
    s.set_condition(st, s.COND_RESTARTING, True, str(end.cause), desc, now=now)
    d.actions.append(
        Event("Warning", f"Restart{end.cause}", f"{desc}: {end.message}; relaunch in {delay:g}s")
    )
    _teardown(f, d, current)
    if delay > 0:
        d.requeue(delay, "backoff")
    return d
