"""Lost work, booked truthfully (issue: lost steps said 0 when steps were lost), and
node loss in one timeout. Pure: the lost-work rule as a table, then the decision core
fed the pods and reports a real restart produces."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest

from lazarus_operator.builders import JobRef
from lazarus_operator.classify import parse_time
from lazarus_operator.decide import decide, needs_selection
from lazarus_operator.lostwork import AT_LEAST, AT_MOST, LostWork, lost_work, step_rate
from lazarus_operator.spec import parse_spec
from lazarus_operator.vocabulary import (
    Checkpoint,
    Decision,
    DeletePod,
    Event,
    Facts,
    Selection,
)

from .factories import NOW, disruption, iso, job_spec, node, pod

pytestmark = pytest.mark.unit

JOB = JobRef("job", "ns", "uid-1")
T0 = NOW - timedelta(minutes=10)  # the ended attempt started here


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


@pytest.mark.parametrize(
    ("reported", "resume_step", "resume_at", "ended_at", "rate", "own", "want"),
    [
        # a trainer-reported step: measured
        (638, 600, 300, 400, None, None, LostWork(38, 100.0, False)),
        (600, 600, 300, 301, None, None, LostWork(0, 0.0, False)),  # the SIGTERM save worked
        (70, 50, None, 60, None, None, LostWork(20, 60.0, False)),  # checkpoint older than it
        (10, -1, None, 30, None, None, LostWork(10, 30.0, False)),  # from scratch
        (638, 600, 300, 400, None, (650, 390), LostWork(50, 100.0, False)),  # its own, unusable
        # killed in its start-up: its trainer ended without a step, so it lost nothing,
        # however long it ran and whatever the step rate says
        (-1, 600, 300, 400, 2.0, None, LostWork(0, 0.0, False)),
        (-1, 600, None, 400, 2.0, None, LostWork(0, 0.0, False)),
        # nothing heard (a lost node): from the attempt's own newest checkpoint, the step
        # rate up to when it was last known alive; a lower bound, estimated
        (None, 600, 300, 400, 0.5, (600, 300), LostWork(50, 100.0, True, AT_LEAST)),
        (None, 600, 300, 400, 0.5, (640, 380), LostWork(50, 100.0, True, AT_LEAST)),
        (None, 600, 300, 300, 0.5, (600, 300), LostWork(0, 0.0, True, AT_LEAST)),
        (None, 600, 300, 400, None, (620, 350), LostWork(20, 100.0, True, AT_LEAST)),
        # last seen before its own newest commit: that commit is what is known
        (None, 600, 300, 340, 2.0, (620, 350), LostWork(20, 40.0, True, AT_LEAST)),
        # no checkpoint of its own: unknown, not a wall-clock guess
        (None, 600, 300, 400, 0.5, None, LostWork(0, 0.0, True, AT_LEAST)),
        (None, 600, None, 400, 2.0, None, LostWork(0, 0.0, True, AT_LEAST)),
    ],
)
def test_lost_work_rule(
    reported: int | None,
    resume_step: int,
    resume_at: float | None,
    ended_at: float,
    rate: float | None,
    own: tuple[int, float] | None,
    want: LostWork,
) -> None:
    got = lost_work(
        reported=reported,
        resume_step=resume_step,
        resume_time=at(resume_at) if resume_at is not None else None,
        attempt_start=T0,
        ended_at=at(ended_at),
        rate=rate,
        own=(own[0], at(own[1])) if own is not None else None,
    )
    assert got == want


def test_an_unknown_resume_point_makes_the_steps_an_upper_bound() -> None:
    """The trainer selects its checkpoint (a filesystem root): the steps past 0 are all
    the operator can count, and it says so."""
    got = lost_work(
        reported=70,
        resume_step=-1,
        resume_time=None,
        attempt_start=T0,
        ended_at=at(60),
        rate=None,
        resume_known=False,
    )
    assert got == LostWork(70, 60.0, False, AT_MOST)
    assert got.describe() == "lost at most 70 steps (60s)"


@pytest.mark.parametrize(
    ("lost", "text"),
    [
        (LostWork(38, 50.0, False), "lost 38 steps (50s)"),
        (LostWork(0, 0.0, False), "lost 0 steps"),
        (LostWork(60, 30.0, True, AT_LEAST), "lost at least ~60 steps (~30s) (estimated)"),
        (
            LostWork(0, 0.0, True, AT_LEAST),
            "lost an unknown number of steps (no trainer reported one)",
        ),
    ],
)
def test_the_wording_says_what_is_known(lost: LostWork, text: str) -> None:
    assert lost.describe() == text


@pytest.mark.parametrize(
    ("a", "b", "want"),
    [((0, 0.0), (100, 50.0), 2.0), ((100, 50.0), (100, 60.0), None), ((5, 10.0), (9, 10.0), None)],
)
def test_step_rate(a: tuple[int, float], b: tuple[int, float], want: float | None) -> None:
    assert step_rate(a[0], at(a[1]), b[0], at(b[1])) == want


def ck(
    step: int, attempt: int = 1, created: datetime | None = None, pace: Any = None
) -> Checkpoint:
    name = f"step-{step:012d}-a{attempt:04d}"
    extra = {} if pace is None else {"lazarusTrainer": {"timings": {"stepsPerSecond": pace}}}
    uri, when = f"s3://b/job/{name}", iso(created) if created else None
    return Checkpoint(name, step, attempt, uri, when, extra=extra)


def cycle(
    st: dict[str, Any],
    pods: list[dict[str, Any]],
    *,
    now: datetime = NOW,
    selection: Selection | None = None,
    nodes: dict[str, dict[str, Any]] | None = None,
    seen: dict[str, int] | None = None,
    spec: dict[str, Any] | None = None,
) -> Decision:
    f = Facts(
        JOB,
        parse_spec(spec or job_spec()),
        st,
        pods,
        {"n1": node("n1"), "n2": node("n2")} if nodes is None else nodes,
        now,
        seen_steps=seen or {},
    )
    if needs_selection(f):
        assert selection is not None
        f = Facts(f.job, f.spec, st, pods, f.nodes, now, selection, seen_steps=f.seen_steps)
    return decide(f)


def running_status(resume_step: int = 500) -> dict[str, Any]:
    return {
        "phase": "Running",
        "attempt": 1,
        "launched": True,
        "attemptStartedAt": iso(T0),
        "resumedFrom": {"value": "x", "name": "x", "step": resume_step},
        "history": [{"attempt": 1}],
        "latestCheckpoint": {"name": ck(600).name, "step": 600, "attempt": 1, "time": iso(at(300))},
    }


def launched_event(d: Decision) -> str:
    return next(a.message for a in d.actions if isinstance(a, Event) and a.reason == "Launched")


def test_a_failed_sigterm_save_books_the_steps_its_late_message_reports() -> None:
    """Evicted: the attempt ends on the DisruptionTarget, before the trainer's message
    (step 638, its save failed) arrives; the pod is gone before a listing shows it."""
    st = running_status()
    evicted = pod("job-a1-0", conditions=disruption("EvictionByEvictionAPI"), deleting=at(350))
    d1 = cycle(st, [evicted, pod("job-a1-1", node_name="n2")], now=at(350))
    assert "lastStep" not in d1.status["pendingRestart"]  # no trainer's end heard yet
    # The message arrives with the pod's last event; then the pods are gone.
    seen = {"job-a1-0": 638, "job-a1-1": 637}
    d2 = cycle(d1.status, [], now=at(400), seen=seen, selection=Selection(ck(600, created=at(300))))
    st2 = d2.status
    assert st2["attempt"] == 2 and st2["lostSteps"] == 38
    assert st2["lostSeconds"] == pytest.approx(50.0)  # eviction at 350, checkpoint at 300
    assert st2["history"][-1]["lostSteps"] == 38 and st2["history"][-1]["lostEstimated"] is False
    assert "lost 38 steps (50s)" in launched_event(d2)


def test_a_crash_books_the_step_of_its_progress_signal() -> None:
    st = running_status()
    crashed = pod(
        "job-a1-1",
        node_name="n2",
        phase="Failed",
        exit_code=1,
        message={"outcome": "running", "step": 611},
    )
    d1 = cycle(st, [pod("job-a1-0"), crashed], now=at(320), selection=Selection(ck(600)))
    assert d1.status["pendingRestart"]["lastStep"] == 611
    d2 = cycle(d1.status, [], now=at(400), selection=Selection(ck(600, created=at(300))))
    assert d2.status["lostSteps"] == 11 and d2.status["history"][-1]["lostEstimated"] is False


def test_a_successful_sigterm_save_books_nothing() -> None:
    st = running_status()
    saved = {"outcome": "preempted", "step": 640, "lastCheckpoint": {"step": 640}}
    ended = pod("job-a1-0", phase="Failed", exit_code=75, message=saved)
    d1 = cycle(st, [ended, pod("job-a1-1", node_name="n2")], now=at(350))
    d2 = cycle(d1.status, [], now=at(360), selection=Selection(ck(640, created=at(349))))
    assert d2.status["lostSteps"] == 0 and d2.status["lostSeconds"] == 0
    assert "lost 0 steps" in launched_event(d2) and "estimated" not in launched_event(d2)


def test_node_loss_is_estimated_from_the_step_rate_and_says_so() -> None:
    st = {**running_status(), "stepRate": 2.0}
    lost_at = at(330)
    nodes = {"n1": node("n1", ready="Unknown", since=lost_at), "n2": node("n2")}
    now = lost_at + timedelta(seconds=20)  # nodeLossTimeoutSeconds
    d1 = cycle(st, [pod("job-a1-0"), pod("job-a1-1", node_name="n2")], now=now, nodes=nodes)
    assert parse_time(d1.status["pendingRestart"]["endedAt"]) == lost_at
    d2 = cycle(d1.status, [], now=now, nodes=nodes, selection=Selection(ck(600, created=at(300))))
    assert d2.status["lostSteps"] == 60  # 2 steps/s for the 30 s past the checkpoint
    entry = d2.status["history"][-1]
    assert entry["lostEstimated"] is True and entry["lostBound"] == "atLeast"
    assert "lost at least ~60 steps" in launched_event(d2) and "estimated" in launched_event(d2)


def second_attempt_status(resume_step: int = 600) -> dict[str, Any]:
    """Attempt 2 of a job at 2 steps/s, resumed from attempt 1's checkpoint at `at(300)`."""
    return {
        **running_status(resume_step),
        "attempt": 2,
        "attemptStartedAt": iso(at(310)),
        "history": [{"attempt": 1}, {"attempt": 2}],
        "stepRate": 2.0,
    }


def test_an_eviction_in_start_up_books_nothing_lost() -> None:
    """Attempt 2 is evicted 90 s into its start-up, before its trainer took a step: the
    container ends without a message (SIGTERM in the imports). It lost no step, whatever
    the step rate times the 90 s would say (the old booking: ~180 "estimated")."""
    st = second_attempt_status()
    evicted = pod(
        "job-a2-0", attempt=2, conditions=disruption("EvictionByEvictionAPI"), deleting=at(400)
    )
    d1 = cycle(st, [evicted, pod("job-a2-1", attempt=2, node_name="n2")], now=at(400))
    stopped = pod("job-a2-0", attempt=2, phase="Failed", exit_code=143, message="")
    stopped["status"]["conditions"] = disruption("EvictionByEvictionAPI")
    other = pod("job-a2-1", attempt=2, node_name="n2", phase="Failed", exit_code=143)
    sel = Selection(ck(600, created=at(300)))
    d2 = cycle(d1.status, [stopped, other], now=at(405), selection=sel)
    assert d2.status["pendingRestart"]["lastStep"] == -1  # ended, no step reported
    d3 = cycle(d2.status, [], now=at(406), selection=sel)
    entry = d3.status["history"][-1]
    assert (entry["lostSteps"], entry["lostSeconds"], entry["lostEstimated"]) == (0, 0, False)
    assert "lostBound" not in entry and "lost 0 steps" in launched_event(d3)


def test_a_lost_node_without_a_checkpoint_of_its_own_books_an_unknown_loss() -> None:
    """Attempt 2 committed nothing before its node vanished: nothing says it took a step
    (it may have spent its time starting up), so no wall-clock guess is booked."""
    st = second_attempt_status()
    lost_at = at(400)
    nodes = {"n1": node("n1", ready="Unknown", since=lost_at), "n2": node("n2")}
    pods = [pod("job-a2-0", attempt=2), pod("job-a2-1", attempt=2, node_name="n1")]
    d1 = cycle(st, pods, now=lost_at + timedelta(seconds=20), nodes=nodes)
    d2 = cycle(
        d1.status,
        [],
        now=lost_at + timedelta(seconds=20),
        nodes=nodes,
        selection=Selection(ck(600, created=at(300))),
    )
    entry = d2.status["history"][-1]
    assert (entry["lostSteps"], entry["lostSeconds"]) == (0, 0)
    assert entry["lostEstimated"] is True and entry["lostBound"] == "atLeast"
    assert "lost an unknown number of steps" in launched_event(d2)


def test_a_lost_node_is_estimated_only_up_to_its_last_heartbeat() -> None:
    """The node was last heard from at 330 and marked NotReady at 370: the estimate
    runs from the attempt's own commit (300) to 330, not to the later times."""
    st = {**running_status(), "stepRate": 2.0}
    ready = node("n1", ready="Unknown", since=at(370))
    ready["status"]["conditions"][0]["lastHeartbeatTime"] = iso(at(330))
    nodes = {"n1": ready, "n2": node("n2")}
    now = at(370) + timedelta(seconds=20)
    d1 = cycle(st, [pod("job-a1-0"), pod("job-a1-1", node_name="n2")], now=now, nodes=nodes)
    d2 = cycle(d1.status, [], now=now, nodes=nodes, selection=Selection(ck(600, created=at(300))))
    assert d2.status["history"][-1]["lostSteps"] == 60  # 2 steps/s for 30 s, not 70 s


def test_two_checkpoints_of_the_running_attempt_give_its_step_rate() -> None:
    st = running_status()
    d = cycle(st, [pod("job-a1-0"), pod("job-a1-1", node_name="n2")], now=at(400))
    d = decide(
        Facts(
            JOB,
            parse_spec(job_spec()),
            st,
            [pod("job-a1-0"), pod("job-a1-1", node_name="n2")],
            {"n1": node("n1"), "n2": node("n2")},
            at(400),
            Selection(ck(700, created=at(350))),
        )
    )
    assert d.status["stepRate"] == pytest.approx(2.0)  # 100 steps in 50 s


@pytest.mark.parametrize(
    ("pace", "want"),
    [
        (3.5, 3.5),  # the trainer's own pace wins over the two checkpoints' 2.0
        (None, 2.0),  # an older trainer records none: the checkpoints' rate
        (0, 2.0),  # nonsense is ignored
        (-1.0, 2.0),
        ("fast", 2.0),
        (True, 2.0),
        (float("inf"), 2.0),
    ],
)
def test_the_trainers_recorded_pace_is_the_step_rate(pace: Any, want: float) -> None:
    pods = [pod("job-a1-0"), pod("job-a1-1", node_name="n2")]
    f = Facts(
        JOB,
        parse_spec(job_spec()),
        running_status(),
        pods,
        {"n1": node("n1"), "n2": node("n2")},
        at(400),
        Selection(ck(700, created=at(350), pace=pace)),
    )
    assert decide(f).status["stepRate"] == pytest.approx(want)


def test_a_node_loss_before_a_second_checkpoint_is_estimated_from_the_trainers_pace() -> None:
    """The attempt committed once (its pace recorded), then its node vanished: the
    estimate needs no second checkpoint."""
    nodes = {"n1": node("n1"), "n2": node("n2")}
    pods = [pod("job-a1-0"), pod("job-a1-1", node_name="n2")]
    st = running_status()
    f = Facts(
        JOB,
        parse_spec(job_spec()),
        st,
        pods,
        nodes,
        at(310),
        Selection(ck(600, pace=4.0, created=at(300))),
    )
    st = decide(f).status
    lost_at = at(320)
    nodes = {"n1": node("n1", ready="Unknown", since=lost_at), "n2": node("n2")}
    now = lost_at + timedelta(seconds=20)
    d1 = cycle(st, pods, now=now, nodes=nodes)
    d2 = cycle(
        d1.status, [], now=now, nodes=nodes, selection=Selection(ck(600, pace=4.0, created=at(300)))
    )
    assert d2.status["lostSteps"] == 80  # 4 steps/s for the 20 s past the checkpoint
    assert d2.status["history"][-1]["lostEstimated"] is True


@pytest.mark.parametrize("lost", ["deleted", "not-ready"])
def test_pods_on_a_lost_node_are_force_deleted_at_once(lost: str) -> None:
    """No kubelet will run their SIGTERM or confirm: waiting would add the
    stuck-Terminating timeout to the node-loss timeout."""
    st = running_status()
    since = NOW - timedelta(seconds=20)
    nodes = (
        {"n2": node("n2")}
        if lost == "deleted"
        else {
            "n1": node("n1", ready="Unknown", since=since),
            "n2": node("n2"),
        }
    )
    d = cycle(st, [pod("job-a1-0"), pod("job-a1-1", node_name="n2")], nodes=nodes)
    assert DeletePod("job-a1-0", force=True) in d.actions
    assert DeletePod("job-a1-1") in d.actions  # a live node: graceful, it saves


def test_restarts_total_counts_relaunches_not_the_failure_that_ended_the_job() -> None:
    spec = job_spec(failurePolicy={"maxFailures": 0})
    crashed = pod("job-a1-0", phase="Failed", exit_code=1)
    pods = [crashed, pod("job-a1-1", node_name="n2")]
    d = cycle(running_status(), pods, spec=spec, selection=Selection(ck(600)))
    assert d.status["phase"] == "Failed"
    assert d.status["restarts"] == {"failed": 1}


def test_a_node_going_not_ready_wakes_the_job_when_its_timeout_runs_out() -> None:
    since = NOW - timedelta(seconds=5)
    nodes = {"n1": node("n1", ready="False", since=since), "n2": node("n2")}
    d = cycle(running_status(), [pod("job-a1-0"), pod("job-a1-1", node_name="n2")], nodes=nodes)
    assert "pendingRestart" not in d.status
    assert d.requeue_after == pytest.approx(15.0)  # nodeLossTimeoutSeconds 20, 5 s gone


def test_lost_seconds_keep_sub_second_precision() -> None:
    """Whole-second timestamps made a loss of 10 steps 0.5 s after a commit read 0 s."""
    st = running_status()
    evicted = pod("job-a1-0", conditions=disruption("EvictionByEvictionAPI"), deleting=at(300.6))
    d1 = cycle(st, [evicted, pod("job-a1-1", node_name="n2")], now=at(300.6))
    seen = {"job-a1-0": 610}
    d2 = cycle(
        d1.status, [], now=at(302), seen=seen, selection=Selection(ck(600, created=at(300.1)))
    )
    assert d2.status["lostSteps"] == 10 and d2.status["lostSeconds"] == pytest.approx(0.5)
