"""The decision core never raises, whatever valid spec and whatever pods, nodes,
status and storage answer it is given (issue 8: a crash in a cycle was a retry
loop with nothing in status). Specs are drawn within the CRD's own bounds."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lazarus_operator.builders import JobRef
from lazarus_operator.decide import decide, needs_selection
from lazarus_operator.spec import parse_spec
from lazarus_operator.vocabulary import Checkpoint, Facts, Selection, StorageProblem

from .factories import NOW, iso

pytestmark = pytest.mark.unit

JOB = JobRef("job", "ns", "uid-1")
MAX_INT = 2**31 - 1


def times() -> st.SearchStrategy[str]:
    return st.integers(-(10**6), 10**6).map(lambda s: iso(NOW + timedelta(seconds=s)))


specs = st.fixed_dictionaries(
    {
        "replicas": st.integers(1, 4),
        "processesPerPod": st.integers(1, 1024),
        "template": st.just({"spec": {"containers": [{"name": "t", "image": "t:1"}]}}),
        "checkpoint": st.fixed_dictionaries(
            {
                "uri": st.sampled_from(["s3://bucket/job", "s3://bucket", "/mnt/ckpt"]),
                "resume": st.sampled_from(["auto", "none", "step-000000000010-a0001"]),
                "retention": st.fixed_dictionaries(
                    {"keepLatest": st.integers(1, 1000), "keepBest": st.just(0)}
                ),
                "save": st.fixed_dictionaries(
                    {
                        "everySteps": st.integers(0, MAX_INT),
                        "everySeconds": st.integers(0, 31536000),
                    }
                ),
            }
        ),
        "failurePolicy": st.fixed_dictionaries(
            {
                "maxFailures": st.integers(0, 1000000),
                "maxFailuresWithoutProgress": st.integers(1, 1000000),
                "backoff": st.fixed_dictionaries(
                    {
                        "initialSeconds": st.floats(0, 86400),
                        "maxSeconds": st.just(86400.0),
                        "multiplier": st.floats(1, 100),
                    }
                ),
            },
            optional={"maxPreemptions": st.integers(0, 1000000)},
        ),
        "gracePeriodSeconds": st.integers(0, 86400),
        "nodeLossTimeoutSeconds": st.integers(0, 86400),
        "stuckTerminatingTimeoutSeconds": st.integers(0, 86400),
        "suspend": st.booleans(),
    },
    optional={"ttlSecondsAfterFinished": st.integers(0, 315360000)},
)

messages = st.one_of(
    st.none(),
    st.text(max_size=20),
    st.fixed_dictionaries(
        {},
        optional={
            "outcome": st.sampled_from(
                ["completed", "preempted", "permanent-error", "error", "running"]
            ),
            "step": st.one_of(st.integers(-5, 10**12), st.text(max_size=3), st.booleans()),
        },
    ).map(json.dumps),
)


@st.composite
def pods(draw: st.DrawFn) -> dict[str, Any]:
    attempt = draw(st.integers(0, 4))
    index = draw(st.integers(0, 4))
    p: dict[str, Any] = {
        "metadata": {
            "name": f"job-a{attempt}-{index}",
            "labels": {"lazarus.dev/attempt": draw(st.sampled_from([str(attempt), "x", ""]))},
        },
        "spec": {"containers": [{"name": "t", "image": "t:1"}]},
        "status": {"phase": draw(st.sampled_from(["Pending", "Running", "Succeeded", "Failed"]))},
    }
    if draw(st.booleans()):
        p["spec"]["nodeName"] = draw(st.sampled_from(["n1", "n2", "gone"]))
    if draw(st.booleans()):
        p["metadata"]["deletionTimestamp"] = draw(times())
        p["metadata"]["deletionGracePeriodSeconds"] = draw(st.integers(0, 86400))
    if draw(st.booleans()):
        term: dict[str, Any] = {
            "exitCode": draw(st.integers(0, 255)),
            "reason": draw(st.sampled_from(["Error", "OOMKilled", "Completed"])),
            "finishedAt": draw(times()),
        }
        if (msg := draw(messages)) is not None:
            term["message"] = msg
        p["status"]["containerStatuses"] = [{"name": "t", "state": {"terminated": term}}]
    if draw(st.booleans()):
        p["status"]["conditions"] = [
            {"type": "DisruptionTarget", "status": "True", "reason": "EvictionByEvictionAPI"}
        ]
    return p


@st.composite
def nodes(draw: st.DrawFn) -> dict[str, dict[str, Any]]:
    out = {}
    for name in ("n1", "n2"):
        if draw(st.booleans()):
            out[name] = {
                "metadata": {"name": name},
                "spec": {
                    "taints": draw(
                        st.lists(
                            st.fixed_dictionaries(
                                {
                                    "key": st.sampled_from(
                                        [
                                            "node.kubernetes.io/unreachable",
                                            "ToBeDeletedByClusterAutoscaler",
                                        ]
                                    ),
                                    "effect": st.sampled_from(["NoExecute", "NoSchedule"]),
                                }
                            ),
                            max_size=2,
                        )
                    )
                },
                "status": {
                    "conditions": [
                        {
                            "type": "Ready",
                            "status": draw(st.sampled_from(["True", "False", "Unknown"])),
                            "lastTransitionTime": draw(times()),
                            "lastHeartbeatTime": draw(times()),
                        }
                    ]
                },
            }
    return out


statuses = st.fixed_dictionaries(
    {
        "phase": st.sampled_from(
            ["Pending", "Running", "Restarting", "Suspended", "Succeeded", "Failed"]
        ),
        "attempt": st.integers(0, 5),
    },
    optional={
        "launched": st.booleans(),
        "attemptStartedAt": times(),
        "finishedAt": times(),
        "stepRate": st.floats(0.001, 1e6),
        "restarts": st.fixed_dictionaries(
            {}, optional={"failed": st.integers(0, 10), "total": st.integers(0, 10)}
        ),
        "latestCheckpoint": st.fixed_dictionaries(
            {"name": st.just("step-000000000010-a0001"), "step": st.integers(0, 10**9)},
            optional={"attempt": st.integers(0, 5), "time": times()},
        ),
        "resumedFrom": st.fixed_dictionaries(
            {"value": st.just("x"), "step": st.integers(-1, 10**9)},
            optional={"name": st.none()},
        ),
        "pendingRestart": st.fixed_dictionaries(
            {"attempt": st.integers(0, 5), "cause": st.just("Failed")},
            optional={
                "notBefore": times(),
                "endedAt": times(),
                "lastStep": st.integers(-1, 10**9),
            },
        ),
        "history": st.lists(st.fixed_dictionaries({"attempt": st.integers(0, 5)}), max_size=3),
    },
)

answers = st.one_of(
    st.none(),
    st.builds(
        Selection,
        st.one_of(
            st.none(),
            st.builds(
                Checkpoint,
                st.just("step-000000000010-a0001"),
                st.integers(0, 10**9),
                st.integers(1, 5),
                st.just("s3://bucket/job/x"),
                st.one_of(st.none(), times()),
            ),
        ),
        st.just(()),
        st.integers(0, 10),
        st.booleans(),
    ),
    st.just(StorageProblem("StorageUnavailable", "down")),
)


@settings(max_examples=1500, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    spec=specs,
    status=statuses,
    pod_list=st.one_of(st.just([]), st.lists(pods(), max_size=5)),
    node_map=nodes(),
    answer=answers,
    seen=st.dictionaries(st.sampled_from(["job-a1-0", "job-a2-1", "x"]), st.integers(0, 10**9)),
)
def test_decide_never_raises(
    spec: dict[str, Any],
    status: dict[str, Any],
    pod_list: list[dict[str, Any]],
    node_map: dict[str, dict[str, Any]],
    answer: Selection | StorageProblem | None,
    seen: dict[str, int],
) -> None:
    parsed = parse_spec(spec)
    selection = answer if isinstance(answer, Selection) else None
    problem = answer if isinstance(answer, StorageProblem) else None
    # As the cycle runs it: the store's answer if the decision needs it, then decide.
    facts = Facts(JOB, parsed, status, pod_list, node_map, NOW, seen_steps=seen)
    if needs_selection(facts):
        facts = Facts(JOB, parsed, status, pod_list, node_map, NOW, selection, problem, seen)
    decide(facts)
    # And without the answer it needed: the core still never raises.
    decide(Facts(JOB, parsed, status, pod_list, node_map, NOW, seen_steps=seen))
