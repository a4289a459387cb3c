"""Fault-tolerant replica groups (spec.faultTolerance) in the decision core, as tables:
a group's end is answered by replacing that group alone, the rest by the whole gang."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from lazarus_contract.ft import EXIT_FT_NO_PEER
from lazarus_operator import status as s
from lazarus_operator.spec import SpecError, parse_spec
from lazarus_operator.vocabulary import CreatePod, CreateService, DeletePod, Selection

from .factories import NOW, disruption, job_spec, node, pod
from .test_decide import Row, check, of, run

pytestmark = pytest.mark.unit


def ft_spec(groups: int = 2, min_groups: int | None = 1, **over: Any) -> dict[str, Any]:
    ft: dict[str, Any] = {"replicaGroups": groups}
    if min_groups is not None:
        ft["minReplicaGroups"] = min_groups
    return job_spec(replicas=groups, faultTolerance=ft, **over)


def group(i: int, gen: int = 0, **kw: Any) -> dict[str, Any]:
    name = f"job-a1-{i}" + (f"-r{gen}" if gen else "")
    p = pod(name, 1, node_name=kw.pop("node_name", f"n{i + 1}"), **kw)
    p["metadata"]["labels"] |= {"lazarus.dev/index": str(i), "lazarus.dev/generation": str(gen)}
    return p


def lighthouse(**kw: Any) -> dict[str, Any]:
    p = pod("job-a1-lighthouse", 1, node_name=kw.pop("node_name", "n1"), **kw)
    labels = p["metadata"]["labels"]
    del labels["lazarus.dev/index"]
    labels["lazarus.dev/role"] = "lighthouse"
    return p


def crashed(i: int, gen: int = 0, code: int = 1) -> dict[str, Any]:
    return group(i, gen, phase="Failed", exit_code=code)


def active(generations: list[int] | None = None, **extra: Any) -> dict[str, Any]:
    st: dict[str, Any] = {
        "phase": s.RUNNING,
        "attempt": 1,
        "launched": True,
        "resumedFrom": {"value": "", "name": None, "step": -1},
        "history": [{"attempt": 1}],
    }
    if generations:
        st["faultTolerance"] = {"generations": generations}
    st.update(extra)
    return st


LOST = NOW - timedelta(seconds=60)
NODES_N2_LOST = {"n1": node("n1"), "n2": node("n2", ready="Unknown", since=LOST)}
NODES_3 = {**NODES_N2_LOST, "n3": node("n3")}

ROWS = [
    Row(
        "a crashed group is replaced alone; the others and the lighthouse go on",
        active(),
        [group(0), crashed(1), lighthouse()],
        spec=ft_spec(),
        phase=s.RUNNING,
        created=["job-a1-1-r1"],
        deleted={"job-a1-1"},
        status_has={
            "faultTolerance.generations": [0, 1],
            "faultTolerance.replacements": {"failed": 1, "total": 1},
            "faultTolerance.lastReplacement.pod": "job-a1-1",
            "faultTolerance.lastReplacement.generation": 1,
            "attempt": 1,
        },
        absent=("restarts", "pendingRestart", "lastFailure"),
        events=["GroupReplaced"],
        env={"LAZARUS_FT_REPLACEMENT": "1", "LAZARUS_FT_REPLICA_GROUP": "1", "WORLD_SIZE": "1"},
    ),
    Row(
        "the replacement runs: the ended generation is only deleted",
        active([0, 1]),
        [group(0), crashed(1), group(1, 1), lighthouse()],
        spec=ft_spec(),
        phase=s.RUNNING,
        created=[],
        deleted={"job-a1-1"},
        events=[],
    ),
    Row(
        "the replacement itself crashes: its next generation",
        active([0, 1]),
        [group(0), crashed(1, 1), lighthouse()],
        spec=ft_spec(),
        created=["job-a1-1-r2"],
        deleted={"job-a1-1-r1"},
        status_has={"faultTolerance.generations": [0, 2]},
    ),
    Row(
        "an evicted group (saved or not) is replaced: a disruption",
        active(),
        [
            group(0),
            group(1, phase="Failed", exit_code=75, conditions=disruption("EvictionByEvictionAPI")),
            lighthouse(),
        ],
        spec=ft_spec(),
        created=["job-a1-1-r1"],
        status_has={"faultTolerance.replacements": {"disrupted": 1, "total": 1}},
    ),
    Row(
        "a group on a lost node is replaced; the old pod force-deleted",
        active(),
        [group(0), group(1), lighthouse()],
        spec=ft_spec(),
        nodes=NODES_N2_LOST,
        created=["job-a1-1-r1"],
        deletes=[DeletePod("job-a1-1", force=True)],
        status_has={"faultTolerance.replacements": {"nodeLost": 1, "total": 1}},
    ),
    Row(
        "below minReplicaGroups (a majority by default) the whole gang restarts",
        active(),
        [group(0), crashed(1), lighthouse()],
        spec=ft_spec(min_groups=None),
        selection=Selection(None),
        phase=s.RESTARTING,
        created=[],
        deleted={"job-a1-0", "job-a1-lighthouse", "job-a1-1"},
        status_has={"restarts": {"failed": 1, "total": 1}},
        absent=("faultTolerance",),
    ),
    Row(
        "a replacement that found no live peer (exit 76): the whole gang restarts",
        active([0, 1]),
        [group(0), crashed(1, 1, EXIT_FT_NO_PEER), lighthouse()],
        spec=ft_spec(),
        selection=Selection(None),
        phase=s.RESTARTING,
        created=[],
        status_has={"restarts": {"failed": 1, "total": 1}},
    ),
    Row(
        "a permanent error in one group fails the job",
        active(),
        [group(0), crashed(1, 0, 78), lighthouse()],
        spec=ft_spec(),
        phase=s.FAILED,
        created=[],
    ),
    Row(
        "failures replaced up to maxFailures; past it the whole gang restarts",
        active(faultTolerance={"replacements": {"failed": 3, "total": 3}}),
        [group(0), crashed(1), lighthouse()],
        spec=ft_spec(),
        selection=Selection(None),
        phase=s.RESTARTING,
        created=[],
        status_has={"restarts": {"failed": 1, "total": 1}},
    ),
    Row(
        "an ended lighthouse is deleted first; no second one while it exists",
        active(),
        [group(0), group(1), lighthouse(phase="Failed", exit_code=1)],
        spec=ft_spec(),
        phase=s.RUNNING,
        created=[],
        deleted={"job-a1-lighthouse"},
    ),
    Row(
        "the lighthouse gone: recreated under the same name, the groups untouched",
        active(),
        [group(0), group(1)],
        spec=ft_spec(),
        phase=s.RUNNING,
        created=["job-a1-lighthouse"],
        deleted=set(),
        status_has={"faultTolerance.lighthouseRestarts": 1},
        events=["LighthouseReplaced"],
    ),
    Row(
        "the lighthouse on a lost node, a minority may form a quorum: the whole gang restarts",
        active(),
        [group(0), group(1, node_name="n1"), lighthouse(node_name="n2")],
        spec=ft_spec(),
        nodes=NODES_N2_LOST,
        phase=s.RESTARTING,
        created=[],
        status_has={
            "restarts": {"nodeLost": 1, "total": 1},
            "lastFailure.reason": "LighthouseLost",
        },
    ),
    Row(
        "the lighthouse on a lost node under a majority: force-deleted, then replaced",
        active(),
        [group(0), group(1, node_name="n3"), group(2, node_name="n3"), lighthouse(node_name="n2")],
        spec=ft_spec(groups=3, min_groups=None),
        nodes=NODES_3,
        phase=s.RUNNING,
        deletes=[DeletePod("job-a1-lighthouse", force=True)],
        created=[],
    ),
    Row(
        "every group's current pod succeeded: the job completed",
        active([0, 1]),
        [
            group(0, phase="Succeeded", exit_code=0),
            crashed(1),
            group(1, 1, phase="Succeeded", exit_code=0),
            lighthouse(),
        ],
        spec=ft_spec(),
        phase=s.SUCCEEDED,
    ),
    Row(
        "one group done, the other running: still Running, nothing replaced",
        active(),
        [group(0, phase="Succeeded", exit_code=0), group(1), lighthouse()],
        spec=ft_spec(),
        phase=s.RUNNING,
        created=[],
    ),
]


@pytest.mark.parametrize("row", ROWS, ids=str)
def test_groups(row: Row) -> None:
    check(row)


def test_the_first_launch_creates_the_groups_and_their_lighthouse() -> None:
    d = run({}, [], spec=ft_spec(), selection=Selection(None))
    made = {p.manifest["metadata"]["name"]: p.manifest for p in of(d, CreatePod)}
    assert sorted(made) == ["job-a1-0", "job-a1-1", "job-a1-lighthouse"]
    assert sorted(a.manifest["metadata"]["name"] for a in of(d, CreateService)) == [
        "job",
        "job-lighthouse",
    ]
    env = {e["name"]: e.get("value") for e in made["job-a1-1"]["spec"]["containers"][0]["env"]}
    assert env["LAZARUS_FT_LIGHTHOUSE"] == "http://job-lighthouse.ns.svc:29510"
    assert env["LAZARUS_FT_REPLICA_GROUP"] == "1" and env["LAZARUS_FT_MIN_GROUPS"] == "1"
    assert env["MASTER_ADDR"] == "job-a1-1.job.ns.svc" and env["WORLD_SIZE"] == "1"
    assert "LAZARUS_FT_REPLACEMENT" not in env
    assert made["job-a1-1"]["spec"]["setHostnameAsFQDN"] is True
    lh = made["job-a1-lighthouse"]["spec"]
    assert lh["containers"][0]["command"] == ["lazarus-lighthouse"]
    assert lh["containers"][0]["image"] == "train:1" and lh["restartPolicy"] == "Never"


def test_the_lighthouse_runs_where_and_as_the_trainer_does_without_its_resources() -> None:
    trainer = {
        "name": "trainer",
        "image": "train:1",
        "command": ["/opt/venv/bin/lazarus-train"],
        "env": [
            {"name": "PYTHONPATH", "value": "/code"},
            {"name": "LAZARUS_FT_GROUPS", "value": "9"},
        ],
        "volumeMounts": [{"name": "code", "mountPath": "/code"}],
        "resources": {"limits": {"nvidia.com/gpu": "8"}},
    }
    template = {
        "spec": {
            "containers": [trainer],
            "volumes": [{"name": "code", "hostPath": {"path": "/code"}}],
            "nodeSelector": {"pool": "gpu"},
            "tolerations": [{"key": "gpu", "operator": "Exists"}],
        }
    }
    d = run({}, [], spec=ft_spec(template=template), selection=Selection(None))
    lh = next(
        a.manifest["spec"]
        for a in of(d, CreatePod)
        if a.manifest["metadata"]["name"].endswith("lighthouse")
    )
    c = lh["containers"][0]
    assert c["command"] == ["/opt/venv/bin/lazarus-lighthouse"]  # beside the trainer's script
    env = {e["name"]: e["value"] for e in c["env"]}
    assert env["PYTHONPATH"] == "/code" and env["LAZARUS_FT_GROUPS"] == "2"  # ours win
    assert (
        c["volumeMounts"] == trainer["volumeMounts"]
        and lh["volumes"] == template["spec"]["volumes"]
    )
    assert (
        lh["nodeSelector"] == {"pool": "gpu"}
        and lh["tolerations"] == template["spec"]["tolerations"]
    )
    assert "limits" not in c["resources"]


@pytest.mark.parametrize(
    ("ft", "replicas", "error"),
    [
        ({"replicaGroups": 2, "minReplicaGroups": 3}, 2, "exceeds replicaGroups"),
        ({"replicaGroups": 3}, 2, "must equal spec.replicas"),
        ({"replicaGroups": 1}, 1, "must be >= 2"),
        ({"replicaGroups": 2, "minReplicaGroups": 0}, 2, "must be >= 1"),
    ],
)
def test_a_fault_tolerance_that_cannot_work_is_refused(
    ft: dict[str, Any], replicas: int, error: str
) -> None:
    with pytest.raises(SpecError, match=error):
        parse_spec(job_spec(replicas=replicas, faultTolerance=ft))


def test_min_groups_default_to_a_majority() -> None:
    got = parse_spec(ft_spec(groups=5, min_groups=None)).fault_tolerance
    assert got is not None and got.min_groups == 3 and not got.below_majority


def test_a_job_can_give_its_lighthouse_a_port_of_its_own() -> None:
    """Pods sharing one address (the local loop) run one lighthouse per job."""
    spec = ft_spec()
    spec["faultTolerance"]["lighthousePort"] = 30123
    d = run({}, [], spec=spec, selection=Selection(None))
    made = {p.manifest["metadata"]["name"]: p.manifest for p in of(d, CreatePod)}
    group_env = {e["name"]: e["value"] for e in made["job-a1-0"]["spec"]["containers"][0]["env"]}
    assert group_env["LAZARUS_FT_LIGHTHOUSE"] == "http://job-lighthouse.ns.svc:30123"
    lh = made["job-a1-lighthouse"]["spec"]["containers"][0]
    assert {"name": "LAZARUS_FT_LIGHTHOUSE_PORT", "value": "30123"} in lh["env"]
    assert lh["readinessProbe"]["tcpSocket"]["port"] == 30123
    svc = next(a.manifest for a in of(d, CreateService) if a.manifest["metadata"]["name"] != "job")
    assert svc["spec"]["ports"][0]["port"] == 30123
