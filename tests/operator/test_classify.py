"""One test per row of the classification table (docs/trainingjob.md)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest

from lazarus_contract import EXIT_PERMANENT, EXIT_PREEMPTED
from lazarus_operator.classify import Cause, PodEnd, classify, node_lost_since

from .factories import NOW, disruption, node, pod

pytestmark = pytest.mark.unit
CODES = frozenset({EXIT_PERMANENT, 42})


def run(p: dict[str, Any], n: dict[str, Any] | None = None, known: bool = True) -> PodEnd | None:
    return classify(
        p,
        node() if n is None and known else n,
        now=NOW,
        node_loss_timeout_s=20,
        permanent_exit_codes=CODES,
        node_known=known,
    )


def test_running_pod_has_not_ended() -> None:
    assert run(pod()) is None


def test_row1_success() -> None:
    end = run(pod(phase="Succeeded", exit_code=0))
    assert end is not None and end.cause == Cause.SUCCEEDED


@pytest.mark.parametrize(
    "reason",
    [
        "PreemptionByScheduler",
        "EvictionByEvictionAPI",
        "DeletionByTaintManager",
        "TerminationByKubelet",
        "DeletionByPodGC",
    ],
)
def test_row2_disruption_target(reason: str) -> None:
    end = run(pod(phase="Failed", exit_code=137, conditions=disruption(reason)))
    assert end is not None and (end.cause, end.reason) == (Cause.DISRUPTED, reason)


def test_row2_disruption_target_beats_oom_reading_of_sigkill() -> None:
    end = run(
        pod(
            phase="Failed",
            exit_code=137,
            reason="OOMKilled",
            conditions=disruption("PreemptionByScheduler"),
        )
    )
    assert end is not None and end.cause == Cause.DISRUPTED


def test_row3_node_gone() -> None:
    end = classify(pod(), None, now=NOW, node_loss_timeout_s=20, permanent_exit_codes=CODES)
    assert end is not None and end.cause == Cause.NODE_LOST and end.node == "n1"


def test_row3_node_not_ready_beyond_timeout() -> None:
    end = run(pod(), node(ready="Unknown", since=NOW - timedelta(seconds=21)))
    assert end is not None and end.cause == Cause.NODE_LOST


def test_row3_node_not_ready_within_timeout_is_still_running() -> None:
    assert run(pod(), node(ready="Unknown", since=NOW - timedelta(seconds=5))) is None


def test_row3_unbound_pod_is_not_on_a_lost_node() -> None:
    assert run(pod(node_name=None, phase="Pending"), known=False) is None


def test_row4_deleted_by_someone_else() -> None:
    end = run(pod(deleting=NOW + timedelta(seconds=30)))
    assert end is not None and (end.cause, end.reason) == (Cause.DISRUPTED, "PodDeleted")


@pytest.mark.parametrize(
    ("exit_code", "reason", "message", "expected"),
    [
        (EXIT_PREEMPTED, None, {"v": 1, "outcome": "preempted", "step": 7}, "PodDeleted"),
        (143, None, None, "PodDeleted"),
        (137, None, None, "PodDeleted"),
        (137, "OOMKilled", None, "OOMKilled"),
        (1, None, None, "Error"),
    ],
)
def test_row4_deleted_pod_that_already_exited(
    exit_code: int, reason: str | None, message: dict[str, Any] | None, expected: str
) -> None:
    """The operator may first see a deleted pod after its container answered the
    SIGTERM: the cause is still the deletion, unless the container ended otherwise."""
    p = pod(
        phase="Failed",
        exit_code=exit_code,
        reason=reason,
        message=message,
        deleting=NOW + timedelta(seconds=30),
    )
    end = run(p)
    assert end is not None and end.reason == expected


def test_row5_oom_killed() -> None:
    end = run(pod(phase="Failed", exit_code=137, reason="OOMKilled"))
    assert end is not None and end.cause == Cause.OOM_KILLED and end.exit_code == 137


@pytest.mark.parametrize("code", [EXIT_PERMANENT, 42])
def test_row6_permanent_exit_code(code: int) -> None:
    end = run(pod(phase="Failed", exit_code=code))
    assert end is not None and end.cause == Cause.PERMANENT


def test_row6_permanent_message() -> None:
    msg = {"v": 1, "outcome": "permanent-error", "exitCode": 1, "message": "foreign checkpoint"}
    end = run(pod(phase="Failed", exit_code=1, message=msg))
    assert end is not None and end.cause == Cause.PERMANENT and end.message == "foreign checkpoint"


def test_row7_sigterm_exit_after_preemption_save() -> None:
    msg = {"v": 1, "outcome": "preempted", "exitCode": 75, "step": 1234, "savedOnSignal": True}
    end = run(pod(phase="Failed", exit_code=EXIT_PREEMPTED, message=msg))
    assert end is not None and (end.cause, end.reason) == (Cause.DISRUPTED, "TrainerPreempted")
    assert end.step == 1234


def test_row8_kubelet_eviction_without_condition() -> None:
    end = run(pod(phase="Failed", status_reason="Evicted"))
    assert end is not None and end.cause == Cause.DISRUPTED


def test_row9_other_failure() -> None:
    end = run(pod(phase="Failed", exit_code=1, message="not json"))
    assert end is not None and end.cause == Cause.FAILED and end.exit_code == 1


def test_row9_sigkill_without_oom_is_a_failure() -> None:
    end = run(pod(phase="Failed", exit_code=137))
    assert end is not None and end.cause == Cause.FAILED


UNREACHABLE = {"key": "node.kubernetes.io/unreachable", "effect": "NoExecute"}


def _taint(since: timedelta) -> dict[str, Any]:
    return {**UNREACHABLE, "timeAdded": (NOW - since).isoformat().replace("+00:00", "Z")}


def _no_ready(n: dict[str, Any]) -> dict[str, Any]:
    n["status"]["conditions"] = []
    return n


@pytest.mark.parametrize(
    ("n", "lost_since"),
    [
        pytest.param(None, NOW, id="node gone"),
        pytest.param(node(), None, id="ready"),
        pytest.param(
            node(ready="Unknown", since=NOW - timedelta(seconds=30)),
            NOW - timedelta(seconds=30),
            id="ready unknown",
        ),
        # A kubelet that came back: Ready again while the NoExecute taint lingers.
        pytest.param(
            node(taints=[_taint(timedelta(seconds=60))]), None, id="ready, taint not yet lifted"
        ),
        pytest.param(
            _no_ready(node(taints=[_taint(timedelta(seconds=60))])),
            NOW - timedelta(seconds=60),
            id="no Ready condition, unreachable taint",
        ),
    ],
)
def test_node_lost_since(n: dict[str, Any] | None, lost_since: datetime | None) -> None:
    assert node_lost_since(n, NOW) == lost_since


def test_a_pod_on_a_node_that_came_back_has_not_ended() -> None:
    """Its node is Ready, the unreachable taint not yet lifted: the attempt runs on."""
    back = node(taints=[_taint(timedelta(seconds=60))])
    assert run(pod(), back) is None
