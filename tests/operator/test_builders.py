"""Pod and Service manifests are pure functions of (job, spec, attempt, resume point)."""

from __future__ import annotations

from typing import Any

import pytest

from lazarus_operator.builders import JobRef, ResumePoint, build_attempt, build_pod, build_service
from lazarus_operator.spec import SpecError, parse_spec

from .factories import job_spec

pytestmark = pytest.mark.unit
JOB = JobRef("job", "ns", "uid-1")


def env_of(pod: dict[str, Any]) -> dict[str, object]:
    c = pod["spec"]["containers"][0]
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in c["env"]}


def test_pods_are_named_labelled_and_owned() -> None:
    pods = build_attempt(JOB, parse_spec(job_spec(replicas=3)), 4, ResumePoint(""))
    assert [p["metadata"]["name"] for p in pods] == ["job-a4-0", "job-a4-1", "job-a4-2"]
    meta = pods[2]["metadata"]
    assert meta["labels"] == {
        "lazarus.dev/job": "job",
        "lazarus.dev/attempt": "4",
        "lazarus.dev/index": "2",
    }
    assert meta["ownerReferences"][0]["uid"] == "uid-1" and meta["ownerReferences"][0]["controller"]


def test_env_follows_the_contract() -> None:
    spec = parse_spec(job_spec(replicas=2, processesPerPod=4, gracePeriodSeconds=45))
    pod = build_pod(
        JOB, spec, 3, 1, ResumePoint("step-000000000100-a0002", "step-000000000100-a0002", 100)
    )
    env = env_of(pod)
    assert env["LAZARUS_ATTEMPT"] == "3" and env["LAZARUS_JOB_UID"] == "uid-1"
    assert env["LAZARUS_RESUME_FROM"] == "step-000000000100-a0002"
    assert env["LAZARUS_GRACE_SECONDS"] == "45"
    assert (
        env["PET_NNODES"] == "2"
        and env["PET_NODE_RANK"] == "1"
        and env["PET_NPROC_PER_NODE"] == "4"
    )
    assert env["PET_MASTER_ADDR"] == "job-a3-0.job.ns.svc" and env["WORLD_SIZE"] == "8"
    assert env["RANK"] == "4"
    assert pod["spec"]["terminationGracePeriodSeconds"] == 45
    assert pod["spec"]["restartPolicy"] == "Never" and pod["spec"]["subdomain"] == "job"


def test_secret_credentials_and_downward_api() -> None:
    spec = parse_spec(job_spec(checkpoint={"uri": "s3://b/p", "secretRef": {"name": "creds"}}))
    pod = build_pod(JOB, spec, 1, 0, ResumePoint(""))
    env = env_of(pod)
    assert env["AWS_ACCESS_KEY_ID"] == {
        "secretKeyRef": {"name": "creds", "key": "AWS_ACCESS_KEY_ID", "optional": False}
    }
    vols = {v["name"]: v for v in pod["spec"]["volumes"]}
    assert (
        vols["lazarus-podinfo"]["downwardAPI"]["items"][0]["fieldRef"]["fieldPath"]
        == "metadata.annotations"
    )
    mounts = pod["spec"]["containers"][0]["volumeMounts"]
    assert {
        "name": "lazarus-podinfo",
        "mountPath": "/etc/lazarus/podinfo",
        "readOnly": True,
    } in mounts


def test_user_template_passes_through_and_user_env_cannot_override_ours() -> None:
    tmpl = {
        "metadata": {"labels": {"team": "a"}},
        "spec": {
            "priorityClassName": "high",
            "nodeSelector": {"gpu": "h100"},
            "tolerations": [{"key": "gpu", "operator": "Exists"}],
            "containers": [
                {
                    "name": "t",
                    "image": "i",
                    "env": [{"name": "LAZARUS_ATTEMPT", "value": "9"}, {"name": "X", "value": "1"}],
                }
            ],
        },
    }
    spec = parse_spec(job_spec(template=tmpl))
    pod = build_pod(JOB, spec, 2, 0, ResumePoint(""))
    assert pod["spec"]["priorityClassName"] == "high" and pod["spec"]["nodeSelector"] == {
        "gpu": "h100"
    }
    assert pod["metadata"]["labels"]["team"] == "a"
    env = env_of(pod)
    assert env["LAZARUS_ATTEMPT"] == "2" and env["X"] == "1"
    assert spec.template["spec"]["containers"][0]["env"][0]["value"] == "9"  # input not mutated


def test_headless_service() -> None:
    svc = build_service(JOB, 29500)
    assert svc["spec"]["clusterIP"] == "None" and svc["spec"]["publishNotReadyAddresses"]


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({"checkpoint": {"uri": "bucket/x"}}, "spec.checkpoint.uri"),
        ({"replicas": 0}, "spec.replicas"),
        ({"template": {"spec": {"containers": []}}}, "spec.template.spec.containers"),
        (
            {"failurePolicy": {"backoff": {"multiplier": 0.5}}},
            "spec.failurePolicy.backoff.multiplier",
        ),
    ],
)
def test_parse_spec_names_the_bad_field(patch: dict[str, object], field: str) -> None:
    with pytest.raises(SpecError, match=field.replace(".", r"\.")):
        parse_spec(job_spec(**patch))
