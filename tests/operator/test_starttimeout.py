"""spec.scheduling.startTimeoutSeconds as tables: an attempt whose pods are not all
Running by the deadline is torn down whole and relaunched after a backoff; before the
deadline the cycle asks to be woken at it; a gang that ran, or pods that completed,
are never timed out. Then the spec's bounds, why a pod waits, and the metrics."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from lazarus_operator import accounting as acc
from lazarus_operator import status as s
from lazarus_operator.builders import JobRef
from lazarus_operator.jobstatus import JobStatus
from lazarus_operator.spec import SpecError, parse_spec
from lazarus_operator.starttimeout import consecutive, why
from lazarus_operator.transition import Transition
from lazarus_operator.vocabulary import CreatePod, DeletePod, Selection

from .factories import NOW, iso, job_spec, pod
from .test_decide import Row, approx, check, table

pytestmark = pytest.mark.unit
TIMEOUT = 60
SPEC = job_spec(scheduling={"startTimeoutSeconds": TIMEOUT})
UNSCHEDULABLE = {
    "type": "PodScheduled",
    "status": "False",
    "reason": "Unschedulable",
    "message": "0/3 nodes are available: 3 Insufficient nvidia.com/gpu.",
}


def waiting(name: str, attempt: int = 1) -> dict[str, Any]:
    """A pod the scheduler could not place."""
    p = pod(name, attempt, phase="Pending", node_name=None, conditions=[UNSCHEDULABLE])
    p["status"].pop("containerStatuses")
    return p


def started(after: float, attempt: int = 1, phase: str = s.PENDING, **extra: Any) -> dict[str, Any]:
    """Attempt `attempt` launched `after` seconds before NOW, all its pods created."""
    st: dict[str, Any] = {
        "phase": phase,
        "attempt": attempt,
        "launched": True,
        "attemptStartedAt": iso(NOW - timedelta(seconds=after)),
        "resumedFrom": {"value": "", "name": None, "step": -1},
        "history": [{"attempt": attempt}],
    }
    st.update(extra)
    return st


def gang(attempt: int = 1) -> list[dict[str, Any]]:
    """Rank 0 runs, rank 1 waits for a node."""
    return [pod(f"job-a{attempt}-0", attempt), waiting(f"job-a{attempt}-1", attempt)]


TORN_DOWN: dict[str, Any] = dict(
    phase=s.RESTARTING,
    deleted={"job-a1-0", "job-a1-1"},
    none_of=(CreatePod,),
    conditions=(
        (s.COND_RUNNING, s.R_START_TIMEOUT, "False"),
        (s.COND_RESTARTING, s.R_START_TIMEOUT, "True"),
    ),
)

ROWS = [
    Row(
        "before the deadline: wait, and wake at it",
        started(TIMEOUT - 15),
        gang(),
        spec=SPEC,
        phase=s.PENDING,
        conditions=((s.COND_RUNNING, s.R_PODS_PENDING, "False"),),
        deleted=set(),
        requeue=approx(15),
    ),
    Row(
        "at the deadline: the whole gang is torn down, relaunched after the backoff",
        started(TIMEOUT),
        gang(),
        spec=SPEC,
        **TORN_DOWN,
        status_has={
            "pendingRestart.cause": s.R_START_TIMEOUT,
            "pendingRestart.lastStep": -1,
            "pendingRestart.notBefore": "2026-01-01T12:00:10.000Z",
            "restarts": {"startTimeout": 1, "total": 1},
            "lastFailure.reason": "Unschedulable",
            "lastFailure.pod": "job-a1-1",
            "history": [
                {
                    "attempt": 1,
                    "cause": s.R_START_TIMEOUT,
                    "reason": "Unschedulable",
                    "endedAt": iso(NOW),
                }
            ],
        },
        events=[s.R_START_TIMEOUT],
        event=(
            s.R_START_TIMEOUT,
            "attempt 1: 1 of 2 pods not running 60s after launch (job-a1-1: Unschedulable: "
            "0/3 nodes are available: 3 Insufficient nvidia.com/gpu.); tearing the attempt "
            "down, relaunch in 10s",
        ),
        requeue=approx(10),
    ),
    Row(
        "not a failure: no budget is charged, even with none left",
        started(TIMEOUT + 1, restarts={"failed": 3}),
        gang(),
        spec={**SPEC, "failurePolicy": {"maxFailures": 0, "maxPreemptions": 0}},
        **TORN_DOWN,
        status_has={"restarts": {"failed": 3, "startTimeout": 1, "total": 1}},
    ),
    Row(
        "the third in a row waits the third backoff step",
        started(
            TIMEOUT,
            attempt=3,
            restarts={"startTimeout": 2, "total": 2},
            history=[
                {"attempt": 1, "cause": s.R_START_TIMEOUT},
                {"attempt": 2, "cause": s.R_START_TIMEOUT},
                {"attempt": 3},
            ],
        ),
        gang(3),
        spec=SPEC,
        phase=s.RESTARTING,
        status_has={
            "restarts": {"startTimeout": 3, "total": 3},
            "pendingRestart.notBefore": "2026-01-01T12:00:40.000Z",
        },
    ),
    Row(
        "a crash in between starts the backoff over",
        started(
            TIMEOUT,
            attempt=3,
            history=[
                {"attempt": 1, "cause": s.R_START_TIMEOUT},
                {"attempt": 2, "cause": "Failed"},
                {"attempt": 3},
            ],
        ),
        gang(3),
        spec=SPEC,
        phase=s.RESTARTING,
        requeue=approx(10),
    ),
    Row(
        "every pod Running past the deadline: nothing to time out",
        started(TIMEOUT * 10),
        [pod("job-a1-0"), pod("job-a1-1", node_name="n2")],
        spec=SPEC,
        phase=s.RUNNING,
        deleted=set(),
        requeue=lambda r: r is None,
    ),
    Row(
        "a pod that completed is done, not waiting",
        started(TIMEOUT * 10),
        [pod("job-a1-0", phase="Succeeded", exit_code=0), pod("job-a1-1", node_name="n2")],
        spec=SPEC,
        phase=s.RUNNING,
        deleted=set(),
    ),
    Row(
        "a completed pod beside one that never ran: 1 of 2 not running",
        started(TIMEOUT),
        [pod("job-a1-0", phase="Succeeded", exit_code=0), waiting("job-a1-1")],
        spec=SPEC,
        **TORN_DOWN,
        event=(s.R_START_TIMEOUT, "1 of 2 pods not running"),
    ),
    Row(
        "bound but its image does not pull: the kubelet's reason is named",
        started(TIMEOUT),
        [
            pod("job-a1-0"),
            {
                **pod("job-a1-1", phase="Pending", node_name="n2"),
                "status": {
                    "phase": "Pending",
                    "containerStatuses": [
                        {
                            "name": "trainer",
                            "state": {
                                "waiting": {"reason": "ImagePullBackOff", "message": "no such"}
                            },
                        }
                    ],
                },
            },
        ],
        spec=SPEC,
        **TORN_DOWN,
        event=(s.R_START_TIMEOUT, "job-a1-1: ImagePullBackOff: no such"),
    ),
    Row(
        "a pod admission refused, before the deadline: created again, woken at the deadline",
        started(TIMEOUT - 5, launched=False),
        [pod("job-a1-0")],
        spec=SPEC,
        created=["job-a1-1"],
        deleted=set(),
        requeue=approx(5),
    ),
    Row(
        "a pod admission refused until the deadline: the rest of the gang goes too",
        started(TIMEOUT, launched=False),
        [pod("job-a1-0")],
        spec=SPEC,
        phase=s.RESTARTING,
        deleted={"job-a1-0"},
        none_of=(CreatePod,),
        status_has={"restarts": {"startTimeout": 1, "total": 1}, "lastFailure.pod": "job-a1-1"},
        event=(
            s.R_START_TIMEOUT,
            "1 of 2 pods not running 60s after launch (job-a1-1: NotCreated: its creation failed",
        ),
    ),
    Row(
        "the gang ran once in this attempt: never timed out afterwards",
        started(TIMEOUT * 10, phase=s.RUNNING),
        gang(),
        spec=SPEC,
        deleted=set(),
        none_of=(DeletePod,),
    ),
    Row(
        "no startTimeoutSeconds: Pending waits for ever, no timer",
        started(TIMEOUT * 100),
        gang(),
        phase=s.PENDING,
        deleted=set(),
        requeue=lambda r: r is None,
    ),
    Row(
        "the relaunch after a start timeout books no lost work",
        {
            **started(TIMEOUT + 20, phase=s.RESTARTING),
            "pendingRestart": {
                "attempt": 1,
                "cause": s.R_START_TIMEOUT,
                "endedAt": iso(NOW - timedelta(seconds=20)),
                "notBefore": iso(NOW - timedelta(seconds=10)),
                "lastStep": -1,
            },
        },
        [],
        spec=SPEC,
        selection=Selection(None, next_attempt=2),
        phase=s.PENDING,
        created=["job-a2-0", "job-a2-1"],
        status_has={"attempt": 2, "lostSteps": 0, "lostSeconds": 0.0},
        event=("Launched", "restart after StartTimeout"),
    ),
]


@table(ROWS)
def test_start_timeout(row: Row) -> None:
    check(row)


def test_consecutive_counts_the_trailing_start_timeouts() -> None:
    st = JobStatus.from_api(
        {"history": [{"cause": s.R_START_TIMEOUT}, {"cause": "Failed"}, {"cause": "StartTimeout"}]}
    )
    assert consecutive(st) == 1
    assert consecutive(JobStatus.from_api({"history": [{"attempt": 1}]})) == 0


@pytest.mark.parametrize(
    ("pod_", "said"),
    [
        (
            waiting("p-a1-0"),
            "Unschedulable: 0/3 nodes are available: 3 Insufficient nvidia.com/gpu.",
        ),
        ({"spec": {}, "status": {"phase": "Pending"}}, "not scheduled yet"),
        ({"spec": {"nodeName": "n1"}, "status": {"phase": "Pending"}}, "Pending"),
        ({"spec": {}, "status": {"reason": "R", "message": "m"}}, "R: m"),
        (
            {
                "spec": {"nodeName": "n1"},
                "status": {"containerStatuses": [{"state": {"waiting": {"reason": "X"}}}]},
            },
            "X",
        ),
    ],
)
def test_why_a_pod_waits(pod_: dict[str, Any], said: str) -> None:
    assert why(pod_) == said


@pytest.mark.parametrize(
    ("scheduling", "want"),
    [
        (None, None),
        ({}, None),
        ({"startTimeoutSeconds": None}, None),
        ({"startTimeoutSeconds": 1}, 1),
        ({"startTimeoutSeconds": 604800}, 604800),
    ],
)
def test_spec_scheduling(scheduling: dict[str, Any] | None, want: int | None) -> None:
    raw = job_spec() if scheduling is None else job_spec(scheduling=scheduling)
    assert parse_spec(raw).scheduling.start_timeout_seconds == want


@pytest.mark.parametrize(
    ("scheduling", "error"),
    [
        ({"startTimeoutSeconds": 0}, "spec.scheduling.startTimeoutSeconds must be >= 1, got 0"),
        ({"startTimeoutSeconds": 604801}, "spec.scheduling.startTimeoutSeconds must be <= 604800"),
        ({"startTimeoutSeconds": "1m"}, "spec.scheduling.startTimeoutSeconds must be an integer"),
        ("soon", "spec.scheduling must be an object"),
    ],
)
def test_spec_scheduling_refused(scheduling: Any, error: str) -> None:
    with pytest.raises(SpecError, match=error):
        parse_spec(job_spec(scheduling=scheduling))


def test_accounting_counts_a_start_timeout_once_and_under_no_restart_cause() -> None:
    job = JobRef("job", "ns", "uid")
    pending = started(TIMEOUT)
    ended = {
        **pending,
        "phase": s.RESTARTING,
        "restarts": {"startTimeout": 1, "total": 1},
        "pendingRestart": {"attempt": 1, "cause": s.R_START_TIMEOUT, "lastStep": -1},
    }
    noted = {**ended, "pendingRestart": {**ended["pendingRestart"], "lastStep": 5}}
    relaunched = {**started(0, attempt=2), "restarts": ended["restarts"]}
    running = {**relaunched, "phase": s.RUNNING}
    clock, seen = None, []
    for i, (old, new) in enumerate(
        [(pending, ended), (ended, noted), (noted, relaunched), (relaunched, running)]
    ):
        t = Transition(
            job, JobStatus.from_api(old), JobStatus.from_api(new), NOW + timedelta(seconds=i)
        )
        clock, o = acc.account(clock, t)
        seen.append(o)
    assert [o.start_timeouts for o in seen] == [1, 0, 0, 0]
    assert all(not o.restarts and not o.recovered and not o.lost_steps for o in seen)
