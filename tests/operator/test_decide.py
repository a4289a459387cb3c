"""The decision core as tables, one per policy: facts in, actions and status out.

Each row is one cycle (`Row`): the job's status, its pods, the spec and the store's
answer, and what the decision must contain. A few multi-cycle scenarios (suspend
then resume, checkpoint-now once, an unchanged status) follow the tables.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import pytest

from lazarus_contract import ANNOTATION_CHECKPOINT_NOW
from lazarus_operator import status as s
from lazarus_operator.builders import JobRef
from lazarus_operator.decide import decide, needs_selection, stage
from lazarus_operator.jobstatus import Stage
from lazarus_operator.spec import parse_spec
from lazarus_operator.vocabulary import (
    Action,
    AnnotatePod,
    Checkpoint,
    CreatePod,
    CreateService,
    Decision,
    DeleteJob,
    DeletePod,
    Event,
    Facts,
    RecordAttempt,
    Selection,
    StorageProblem,
)

from .factories import NOW, disruption, job_spec, node, pod

pytestmark = pytest.mark.unit
JOB = JobRef("job", "ns", "uid-1")
NODES = {"n1": node("n1"), "n2": node("n2")}
CK200 = "step-000000000200-a0001"


def ck(step: int, attempt: int = 1) -> Checkpoint:
    name = f"step-{step:012d}-a{attempt:04d}"
    return Checkpoint(name, step, attempt, f"s3://bucket/job/{name}")


def facts(
    status: dict[str, Any],
    pods: list[dict[str, Any]],
    *,
    spec: dict[str, Any] | None = None,
    selection: Selection | None = None,
    problem: StorageProblem | None = None,
    now: datetime = NOW,
    nodes: dict[str, dict[str, Any]] | None = None,
) -> Facts:
    """The facts as the cycle gathers them: the store's answer only if the decision
    needs it (`needs_selection`)."""
    f = Facts(
        JOB, parse_spec(spec or job_spec()), status, pods, NODES if nodes is None else nodes, now
    )
    if needs_selection(f):
        assert selection is not None or problem is not None, "decision wanted the store"
        f = Facts(f.job, f.spec, status, pods, f.nodes, now, selection, problem)
    return f


def run(status: dict[str, Any], pods: list[dict[str, Any]], **kw: Any) -> Decision:
    """One cycle as the cycle runs it: one decision."""
    return decide(facts(status, pods, **kw))


def of(d: Decision, kind: type) -> list[Any]:
    return [a for a in d.actions if isinstance(a, kind)]


def running(attempt: int = 1, n: int = 2) -> list[dict[str, Any]]:
    return [pod(f"job-a{attempt}-{i}", attempt, node_name=f"n{i + 1}") for i in range(n)]


def launched(attempt: int = 1, resume_step: int = -1, **extra: Any) -> dict[str, Any]:
    st: dict[str, Any] = {
        "phase": s.RUNNING,
        "attempt": attempt,
        "launched": True,
        "resumedFrom": {"value": "", "name": None, "step": resume_step},
        "history": [{"attempt": attempt}],
    }
    st.update(extra)
    return st


def pending(cause: str, not_before: str = "2026-01-01T12:00:00Z", **extra: Any) -> dict[str, Any]:
    return {"attempt": 1, "cause": cause, "notBefore": not_before, **extra}


def failed(name: str = "job-a1-0", exit_code: int = 1, **kw: Any) -> dict[str, Any]:
    return pod(name, 1, phase="Failed", exit_code=exit_code, **kw)


def env(d: Decision) -> dict[str, Any]:
    """The trainer's environment in the first pod created."""
    containers = of(d, CreatePod)[0].manifest["spec"]["containers"]
    return {e["name"]: e.get("value") for e in containers[0]["env"]}


def at_path(status: dict[str, Any], path: str) -> Any:
    value: Any = status
    for key in path.split("."):
        value = value[key]
    return value


# --- the table row -----------------------------------------------------------------------
@dataclass(frozen=True)
class Row:
    """One cycle and what its decision must hold (fields left at their default are
    not checked)."""

    id: str
    status: dict[str, Any]
    pods: list[dict[str, Any]] = field(default_factory=list)
    spec: dict[str, Any] | None = None
    selection: Selection | None = None
    problem: StorageProblem | None = None
    now: datetime = NOW
    nodes: dict[str, dict[str, Any]] | None = None
    # expectations
    phase: str | None = None
    status_has: dict[str, Any] = field(default_factory=dict)  # dotted path -> value
    absent: tuple[str, ...] = ()  # status keys that must be absent
    conditions: tuple[tuple[str, ...], ...] = ()  # (type, reason) or (type, reason, status)
    records: list[RecordAttempt] | None = None
    created: list[str] | None = None  # names of the pods created, in order
    deleted: set[str] | None = None  # names of the pods deleted
    deletes: list[DeletePod] | None = None  # the deletes exactly
    first_actions: list[type] | None = None  # the types the actions start with
    none_of: tuple[type, ...] = ()  # kinds of action that must not appear
    events: list[str] | None = None  # the event reasons exactly
    event: tuple[str, str] | None = None  # some event: (reason, part of its message)
    env: dict[str, str] = field(default_factory=dict)  # in the first pod created
    requeue: Callable[[float | None], bool] | None = None

    def __str__(self) -> str:
        return self.id


def check(row: Row) -> Decision:
    d = run(
        row.status,
        row.pods,
        spec=row.spec,
        selection=row.selection,
        problem=row.problem,
        now=row.now,
        nodes=row.nodes,
    )
    st = d.status
    if row.phase is not None:
        assert st["phase"] == row.phase
    for path, want in row.status_has.items():
        assert at_path(st, path) == want, path
    for key in row.absent:
        assert key not in st, key
    for ctype, reason, *status in row.conditions:
        cond = d.state.condition(ctype)
        assert cond is not None and cond.reason == reason, (ctype, cond)
        if status:
            assert cond.status == status[0], (ctype, cond)
    if row.records is not None:
        assert of(d, RecordAttempt) == row.records
    if row.created is not None:
        assert [p.manifest["metadata"]["name"] for p in of(d, CreatePod)] == row.created
    if row.deleted is not None:
        assert {a.name for a in of(d, DeletePod)} == row.deleted
    if row.deletes is not None:
        assert of(d, DeletePod) == row.deletes
    if row.first_actions is not None:
        assert [type(a) for a in d.actions[: len(row.first_actions)]] == row.first_actions
    for kind in row.none_of:
        assert not of(d, kind), kind
    if row.events is not None:
        assert [e.reason for e in of(d, Event)] == row.events
    if row.event is not None:
        reason, part = row.event
        assert any(e.reason == reason and part in e.message for e in of(d, Event)), d.events
    if row.env:
        got = env(d)
        assert {k: got[k] for k in row.env} == row.env
    if row.requeue is not None:
        assert row.requeue(d.requeue_after), d.requeue_after
    return d


def approx(want: float) -> Callable[[float | None], bool]:
    return lambda got: got == pytest.approx(want)


def table(rows: list[Row]) -> pytest.MarkDecorator:
    return pytest.mark.parametrize("row", rows, ids=str)


# --- launch (first start, the store's answer, fencing) ----------------------------------
LAUNCH = [
    Row(
        "first cycle asks the store then launches attempt 1",
        {},
        selection=Selection(None),
        first_actions=[RecordAttempt, CreateService, CreatePod, CreatePod],
        records=[RecordAttempt(1, None, -1)],
        created=["job-a1-0", "job-a1-1"],
        status_has={"attempt": 1},
        phase=s.PENDING,
    ),
    Row(
        "first launch continues the attempt numbers already on the root",
        {},
        selection=Selection(ck(200), (), next_attempt=4),
        records=[RecordAttempt(4, CK200, 200)],
        created=["job-a4-0", "job-a4-1"],
        status_has={"attempt": 4},
    ),
    Row(
        "a filesystem root is delegated to the trainer",
        {},
        spec=job_spec(checkpoint={"uri": "/mnt/ckpt/job"}),
        selection=Selection(None, (), 0, delegated=True),
        env={"LAZARUS_RESUME_FROM": "auto", "LAZARUS_ATTEMPT": "1"},
        records=[],  # the operator cannot write the pods' volume
        conditions=((s.COND_STORAGE, s.R_STORAGE_DELEGATED),),
    ),
    Row(
        "launch resumes from the chosen checkpoint and reports the skipped",
        {},
        selection=Selection(ck(200), (("step-000000000300-a0001", "missing object shard-0"),)),
        env={"LAZARUS_RESUME_FROM": CK200},
        records=[RecordAttempt(1, CK200, 200)],
        event=("CheckpointSkipped", "shard-0"),
    ),
    Row(
        "resume none starts fresh even with checkpoints",
        {},
        spec=job_spec(checkpoint={"uri": "s3://bucket/job", "resume": "none"}),
        selection=Selection(ck(200)),
        env={"LAZARUS_RESUME_FROM": ""},
    ),
    Row(
        "a storage problem waits, with a condition and an event",
        {},
        problem=StorageProblem(s.R_SECRET_NOT_FOUND, "Secret ns/creds not found"),
        none_of=(CreatePod,),
        requeue=lambda got: got is not None,
        conditions=((s.COND_STORAGE, s.R_SECRET_NOT_FOUND, "False"),),
        events=[s.R_SECRET_NOT_FOUND],
    ),
    Row(
        "a partial launch creates only the missing pods, and fences again (idempotent)",
        launched(launched=False),
        running(n=1),
        created=["job-a1-1"],
        records=[RecordAttempt(1, None, -1)],
    ),
]


@table(LAUNCH)
def test_launch(row: Row) -> None:
    check(row)


@pytest.mark.parametrize(("root_next", "launched_as"), [(3, 3), (9, 9), (0, 3)])
def test_later_launches_go_above_every_attempt_the_root_recorded(
    root_next: int, launched_as: int
) -> None:
    """Attempt numbers are unique per root: if another job on the same root took 3..8,
    this job's next attempt is 9, so the two never write the same checkpoint names."""
    st = launched(attempt=2, pendingRestart=pending("Failed", attempt=2))
    d = run(st, [], selection=Selection(ck(200), (), next_attempt=root_next))
    assert of(d, RecordAttempt) == [RecordAttempt(launched_as, CK200, 200)]


# --- the running attempt: success, pods' ends, node loss ---------------------------------
RUNNING = [
    Row(
        "all running is Running and changes nothing else",
        launched(),
        running(),
        phase=s.RUNNING,
        none_of=(CreatePod, DeletePod),
    ),
    Row(
        "all pods completed succeeds",
        launched(),
        [pod(f"job-a1-{i}", 1, phase="Succeeded", exit_code=0) for i in range(2)],
        phase=s.SUCCEEDED,
        none_of=(DeletePod,),
    ),
    Row(
        "one completed, one running keeps running",
        launched(),
        [pod("job-a1-0", 1, phase="Succeeded", exit_code=0), running()[1]],
        phase=s.RUNNING,
        conditions=((s.COND_RUNNING, s.R_ALL_RUNNING, "True"),),
    ),
    Row(
        "a vanished pod is a disruption",
        launched(),
        running(n=1),
        status_has={"lastFailure.reason": "PodDeleted"},
    ),
    Row(
        "a lost node ends the attempt",
        launched(),
        running(),
        nodes={
            "n1": node("n1", ready="Unknown", since=NOW - timedelta(seconds=30)),
            "n2": node("n2"),
        },
        status_has={"lastFailure.cause": "NodeLost", "restarts": {"nodeLost": 1, "total": 1}},
    ),
]


@table(RUNNING)
def test_running(row: Row) -> None:
    check(row)


# --- failure policy: budgets, no progress, permanent errors, backoff ---------------------
NO_PROGRESS_SPEC = job_spec(failurePolicy={"maxFailures": 100, "maxFailuresWithoutProgress": 2})
FAILURE_POLICY = [
    Row(
        "a failure ends the attempt, deletes the gang and backs off",
        launched(),
        [running()[0], failed("job-a1-1", node_name="n2")],
        selection=Selection(ck(100)),
        phase=s.RESTARTING,
        status_has={
            "restarts": {"failed": 1, "total": 1},
            "lastFailure.pod": "job-a1-1",
            "lastFailure.exitCode": 1,
        },
        deleted={"job-a1-0", "job-a1-1"},
        requeue=lambda got: got == 10.0,
        event=("RestartFailed", ""),
    ),
    Row(
        "a preemption relaunches at once and spares the failure budget",
        launched(),
        [failed(exit_code=137, conditions=disruption("PreemptionByScheduler")), running()[1]],
        # no store answer: a disruption needs none
        status_has={"restarts": {"disrupted": 1, "total": 1}},
        requeue=lambda got: got is None or got >= 1,  # only the teardown timer
        event=("RestartDisrupted", ""),
    ),
    Row(
        "the failure budget exhausted fails the job",
        launched(restarts={"failed": 3, "total": 3}),
        [failed(), *running()[1:]],
        selection=Selection(ck(500)),
        phase=s.FAILED,
        conditions=((s.COND_FAILED, s.R_BACKOFF_LIMIT),),
        deleted={"job-a1-0", "job-a1-1"},
    ),
    Row(
        "the preemption budget, when set",
        launched(restarts={"disrupted": 1, "total": 1}),
        [failed(exit_code=75), *running()[1:]],
        spec=job_spec(failurePolicy={"maxPreemptions": 1}),
        phase=s.FAILED,
        conditions=((s.COND_FAILED, s.R_PREEMPTION_LIMIT),),
    ),
    Row(
        "a crash loop without progress fails fast",
        launched(resume_step=100, failuresWithoutProgress=1, consecutiveFailures=1),
        [failed(), *running()[1:]],
        spec=NO_PROGRESS_SPEC,
        selection=Selection(ck(100)),
        conditions=((s.COND_FAILED, s.R_NO_PROGRESS),),
    ),
    Row(
        "a failure after progress resets the streak",
        launched(resume_step=100, failuresWithoutProgress=1, consecutiveFailures=4),
        [failed(), *running()[1:]],
        spec=NO_PROGRESS_SPEC,
        selection=Selection(ck(150)),
        phase=s.RESTARTING,
        status_has={"failuresWithoutProgress": 0},
        requeue=lambda got: got == 10.0,  # backoff restarts from its initial delay
    ),
    Row(
        "a permanent error fails without retry",
        launched(),
        [failed(exit_code=78), *running()[1:]],
        conditions=((s.COND_FAILED, s.R_PERMANENT),),
        absent=("pendingRestart",),
    ),
]


@table(FAILURE_POLICY)
def test_failure_policy(row: Row) -> None:
    check(row)


def test_a_preempted_attempts_restart_is_due_at_once() -> None:
    row = FAILURE_POLICY[1]
    d = check(row)
    assert d.status["pendingRestart"]["notBefore"].startswith("2026-01-01T12:00:00.000")


# --- restart: teardown, backoff, relaunch ------------------------------------------------
BACKOFF = launched(
    resume_step=100,
    latestCheckpoint={"name": "x", "step": 300},
    pendingRestart=pending("Failed", "2026-01-01T12:00:10Z", lastStep=350),
)
LOST_NODE = {"n1": node("n1", ready="Unknown", since=NOW - timedelta(seconds=60))}
# deletion requested 16 s ago with a 30 s grace: on a lost node, the grace is moot
STUCK = pod("job-a1-0", 1, deleting=NOW + timedelta(seconds=14), grace=30)
RESTART = [
    Row(
        "backoff: not yet",
        BACKOFF,
        now=NOW + timedelta(seconds=5),
        none_of=(CreatePod,),
        requeue=approx(5.0),
    ),
    Row(
        "backoff over: relaunch, with the lost steps booked",
        BACKOFF,
        now=NOW + timedelta(seconds=10),
        selection=Selection(ck(300)),
        status_has={"attempt": 2, "lostSteps": 50, "resumedFrom.step": 300},
        absent=("pendingRestart",),
        created=["job-a2-0", "job-a2-1"],
    ),
    Row(
        "the relaunch waits for the old pods to go",
        launched(pendingRestart=pending("Disrupted")),
        [pod("job-a1-0", 1, deleting=NOW + timedelta(seconds=30))],
        none_of=(CreatePod, DeletePod),
    ),
    Row(
        "stuck terminating on a lost node: force-deleted at once",
        launched(pendingRestart=pending("NodeLost")),
        [STUCK],
        nodes=LOST_NODE,
        deletes=[DeletePod("job-a1-0", force=True)],
    ),
    Row(
        "stuck terminating on a healthy node: the kubelet still has its grace period",
        launched(pendingRestart=pending("NodeLost")),
        [STUCK],
        none_of=(DeletePod,),
    ),
    Row(
        "stuck terminating on a healthy node: forced after the grace plus the timeout",
        launched(pendingRestart=pending("Failed")),
        [pod("job-a1-0", 1, deleting=NOW - timedelta(seconds=16))],
        deletes=[DeletePod("job-a1-0", force=True)],
    ),
]


@table(RESTART)
def test_restart(row: Row) -> None:
    check(row)


# --- finished: TTL --------------------------------------------------------------------------
TTL_SPEC = job_spec(ttlSecondsAfterFinished=60)
FINISHED = [
    Row(
        "TTL after finish: due, the job is deleted",
        {"phase": s.SUCCEEDED, "attempt": 1, "finishedAt": "2026-01-01T11:58:00Z"},
        spec=TTL_SPEC,
        first_actions=[DeleteJob],
    ),
    Row(
        "TTL after finish: not yet, wake up when due",
        {"phase": s.SUCCEEDED, "attempt": 1, "finishedAt": "2026-01-01T11:59:30Z"},
        spec=TTL_SPEC,
        none_of=(DeleteJob,),
        requeue=approx(30.0),
    ),
]


@table(FINISHED)
def test_finished(row: Row) -> None:
    check(row)


# --- the stage machine and when the store is needed ------------------------------------
def _stage_rows() -> list[tuple[str, dict[str, Any], dict[str, Any], Stage, bool]]:
    ended = [running()[0], failed("job-a1-1", node_name="n2")]
    return [
        ("new job", {}, {}, Stage.LAUNCHING, True),
        ("finished", {"phase": s.FAILED, "attempt": 1}, {}, Stage.FINISHED, False),
        ("suspend requested", launched(), {"suspend": True}, Stage.SUSPENDING, True),
        ("resumed after suspend", launched(phase=s.SUSPENDED), {}, Stage.LAUNCHING, True),
        ("restart due", launched(pendingRestart=pending("Failed")), {}, Stage.RESTARTING, True),
        (
            "restart in backoff",
            launched(pendingRestart=pending("Failed", "2026-01-01T12:05:00Z")),
            {},
            Stage.RESTARTING,
            False,
        ),
        ("running", launched(), {"pods": running()}, Stage.ACTIVE, False),
        ("a failed pod: did it progress?", launched(), {"pods": ended}, Stage.ACTIVE, True),
    ]


@pytest.mark.parametrize(("what", "status", "over", "want", "needs"), _stage_rows())
def test_stage_and_selection_need(
    what: str, status: dict[str, Any], over: dict[str, Any], want: Stage, needs: bool
) -> None:
    pods = over.pop("pods", [])
    f = Facts(JOB, parse_spec(job_spec(**over)), status, pods, NODES, NOW)
    assert stage(f) == want
    assert needs_selection(f) is needs


def test_without_the_answer_it_needs_the_core_waits_for_the_store() -> None:
    d = decide(Facts(JOB, parse_spec(job_spec()), {}, [], NODES, NOW))
    assert not of(d, CreatePod) and d.requeue_after is not None


# --- scenarios over several cycles ----------------------------------------------------
def test_disruption_taint_requests_checkpoint_once() -> None:
    taint = {"key": "ToBeDeletedByClusterAutoscaler", "value": "1", "effect": "NoSchedule"}
    nodes = {"n1": node("n1", taints=[taint]), "n2": node("n2")}
    d = run(launched(), running(), nodes=nodes)
    ann = of(d, AnnotatePod)
    assert [a.name for a in ann] == ["job-a1-0"] and ANNOTATION_CHECKPOINT_NOW in ann[0].annotations
    pods = running()
    pods[0]["metadata"]["annotations"].update(ann[0].annotations)
    assert not of(run(launched(), pods, nodes=nodes), AnnotatePod)


def test_suspend_stops_pods_then_resume_launches_next_attempt() -> None:
    spec = job_spec(suspend=True)
    d = run(launched(), running(), spec=spec)
    assert {a.name for a in of(d, DeletePod)} == {"job-a1-0", "job-a1-1"}
    cond = d.state.condition(s.COND_SUSPENDED)
    assert d.status["phase"] == s.SUSPENDED and cond is not None and cond.reason == s.R_SUSPENDING
    # Pods gone: the store is asked once, so status names the suspend-time save.
    d2 = run(d.status, [], spec=spec, selection=Selection(ck(400)))
    cond = d2.state.condition(s.COND_SUSPENDED)
    assert cond is not None and cond.reason == s.R_SUSPENDED and not of(d2, CreatePod)
    assert d2.status["latestCheckpoint"]["step"] == 400
    assert not needs_selection(Facts(JOB, parse_spec(spec), d2.status, [], NODES, NOW))
    d3 = run(d2.status, [], selection=Selection(ck(400)))
    assert d3.status["attempt"] == 2 and d3.status["resumedFrom"]["step"] == 400
    assert "restarts" not in d3.status  # a suspend is not a restart


def test_status_unchanged_means_no_write() -> None:
    first = run(launched(), running())
    again = run(first.status, running())
    assert s.status_patch(first.status, again.status) is None


def test_every_action_kind_is_in_a_table() -> None:
    """The tables reach every action the core can take."""
    seen: set[type[Action]] = set()
    for row in [*LAUNCH, *RUNNING, *FAILURE_POLICY, *RESTART, *FINISHED]:
        d = run(
            row.status,
            row.pods,
            spec=row.spec,
            selection=row.selection,
            problem=row.problem,
            now=row.now,
            nodes=row.nodes,
        )
        seen |= {type(a) for a in d.actions}
    assert seen >= {RecordAttempt, CreateService, CreatePod, DeletePod, Event, DeleteJob}


@pytest.mark.parametrize(
    ("old", "new", "patch"),
    [
        ({"a": 1}, {"a": 1}, None),
        ({"a": 1, "b": 2}, {"a": 1}, {"b": None}),
        # a nested record that dropped a key: null, or the merge keeps the old value
        (
            {"lastFailure": {"attempt": 1, "exitCode": 137, "node": "n1"}},
            {"lastFailure": {"attempt": 2, "node": "n2"}},
            {"lastFailure": {"attempt": 2, "node": "n2", "exitCode": None}},
        ),
        (
            {"faultTolerance": {"generations": [0, 1], "replacements": {"failed": 1}}},
            {"faultTolerance": {"replacements": {"failed": 1}}},
            {"faultTolerance": {"generations": None}},
        ),
        ({"history": [{"a": 1}, {"b": 2}]}, {"history": [{"b": 2}]}, {"history": [{"b": 2}]}),
        ({"x": {"y": 1}}, {"x": 3}, {"x": 3}),
    ],
)
def test_the_status_patch_is_a_merge_patch_to_the_new_status(
    old: dict[str, Any], new: dict[str, Any], patch: dict[str, Any] | None
) -> None:
    assert s.status_patch(old, new) == patch
    if patch is not None:  # RFC 7386 applied to old gives new
        assert merge(old, patch) == new


def merge(target: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return patch
    out = dict(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = merge(out.get(k), v)
    return out
