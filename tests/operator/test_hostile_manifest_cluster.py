"""A writer of a shared root plants manifests no reader should choke on (issue 22): nested
100,000 deep, numbers past any integer type, a 5,000-digit integer. The operator lists
them with the job's own checkpoints and must keep launching the job from its own, with a
one-line skip, never a ReconcileError. Real API server, real S3 server; the tests play
kubelet."""

from __future__ import annotations

import json

import pytest

from lazarus_contract import checkpoint_name

from .conftest import Jobs
from .harness import FakeKubelet, OperatorProcess
from .test_operator import env_of, reasons, running

pytestmark = pytest.mark.cluster

DEEP = b'{"schemaVersion": 1, "extra": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"


def huge_numbers(step: int, attempt: int) -> bytes:
    """A manifest that passes every structural check but its numbers' sizes."""
    doc = {
        "schemaVersion": 1,
        "name": checkpoint_name(step, attempt),
        "job": {"name": "", "namespace": "", "uid": ""},
        "attempt": attempt,
        "step": step,
        "reason": "periodic",
        "metrics": {"loss": "@BIG@"},
        "samplesSeen": 2**70,
        "createdAt": "0001-01-01T00:00:00+14:00",
        "library": {"lazarus": "x"},
        "objects": [{"path": "model.bin", "size": 2**64, "crc32c": "AAAAAA=="}],
    }
    return json.dumps(doc).replace('"@BIG@"', "1" + "0" * 400).encode()


def plant(jobs: Jobs, root: str, name: str, body: bytes) -> None:
    s3 = jobs.s3.client()
    s3.put_object(Bucket=jobs.bucket, Key=f"{root}/{name}/model.bin", Body=b"y" * 64)
    s3.put_object(Bucket=jobs.bucket, Key=f"{root}/{name}/manifest.json", Body=body)


def test_the_job_launches_from_its_own_checkpoint_beside_hostile_manifests(
    jobs: Jobs, kubelet: FakeKubelet, operator: OperatorProcess
) -> None:
    job = "beside-hostile"
    jobs.create(job, suspend=True)
    own = jobs.seed(job, 100, 1)
    hostile = {
        checkpoint_name(900, 1): DEEP,
        checkpoint_name(901, 1): huge_numbers(901, 1),
        checkpoint_name(902, 1): b'{"schemaVersion": 1, "step": ' + b"9" * 5_000 + b"}",
    }
    for name, body in hostile.items():
        plant(jobs, job, name, body)
    jobs.patch_spec(job, {"suspend": False})

    running(jobs, kubelet, job, 1)
    pod = kubelet.pod(f"{job}-a1-0")
    assert pod is not None and env_of(pod)["LAZARUS_RESUME_FROM"] == own
    kubelet.terminate(f"{job}-a1-0", 137, disruption="PreemptionByScheduler")
    running(jobs, kubelet, job, 2)
    pod = kubelet.pod(f"{job}-a2-0")
    assert pod is not None and env_of(pod)["LAZARUS_RESUME_FROM"] == own

    assert (jobs.condition(job, "ReconcileError") or {}).get("status") != "True"
    assert "CheckpointSkipped" in reasons(jobs, job)  # the planted ones, each one line
    warnings = [e["message"] for e in jobs.events(job) if e["type"] == "Warning"]
    assert not [m for m in warnings if "Recursion" in m or "Traceback" in m], warnings
    assert all("\n" not in m and len(m) < 2_000 for m in warnings), warnings
