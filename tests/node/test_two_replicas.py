"""Two pods, one gang, on the real node: torch rendezvous through pod DNS.

Pod 0 is the rendezvous master, reached as `<job>-a<attempt>-0.<job>.<ns>.svc`
through the job's headless Service and CoreDNS; the gang trains with gloo over
the pod network. Evicted mid-training, it resumes from its SIGTERM checkpoint
and ends with weights bitwise equal to an uninterrupted run of the same job.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from kubernetes import client

from tests.node.conftest import Job, RealNode, job_body, trainer_template
from tests.operator.harness import OperatorProcess, wait_for

pytestmark = pytest.mark.e2e
STEPS = 40


def _gang_template(args: list[str], out: Path) -> dict[str, Any]:
    """torchrun under lazarus-launch (the image's entrypoint), one process per pod;
    torchrun reads the operator's PET_* variables. `out` is shared with the host."""
    template = trainer_template(
        ["torchrun", "-m", "lazarus_trainer.reference", *args], command=["lazarus-launch"]
    )
    spec = template["spec"]
    spec["volumes"].append({"name": "out", "hostPath": {"path": str(out), "type": "Directory"}})
    spec["containers"][0]["volumeMounts"].append({"name": "out", "mountPath": str(out)})
    return template


def _run(
    real_node: RealNode, job: Job, body: dict[str, Any], evict: bool, timeout: float
) -> dict[str, Any]:
    job.create(body)
    try:
        if evict:
            uri = body["spec"]["checkpoint"]["uri"]
            wait_for(lambda: real_node.s3.committed_step(uri) is not None, 300, "a checkpoint")
            pod = f"{job.name}-a1-1"  # not the master: the whole gang must still stop and save
            job.core.create_namespaced_pod_eviction(
                pod, job.ns, client.V1Eviction(metadata=client.V1ObjectMeta(name=pod))
            )
        return job.wait_finished(timeout)
    finally:
        print(job.pod_logs())


def test_two_replica_gang_evicted_matches_an_uninterrupted_run(
    real_node: RealNode,
    node_namespace: str,
    bucket_on_node: str,
    operator: OperatorProcess,
    tmp_path: Path,
) -> None:
    tmp_path.chmod(0o777)
    common = ["--steps", str(STEPS), "--step-sleep", "0.2"]
    results = {}
    for name, evict in (("ref", False), ("gang", True)):
        args = [*common, "--final-params", str(tmp_path / f"{name}.pt")]
        body = job_body(name, bucket_on_node, real_node, _gang_template(args, tmp_path), replicas=2)
        results[name] = _run(real_node, Job(real_node, node_namespace, name), body, evict, 400)

    ref, st = results["ref"], results["gang"]
    assert ref["phase"] == "Succeeded" and ref["attempt"] == 1, ref
    assert st["phase"] == "Succeeded", st
    assert st["attempt"] == 2 and st["restarts"] == {"disrupted": 1, "total": 1}, st
    assert st["history"][0]["reason"] == "EvictionByEvictionAPI", st["history"]
    assert st["lostSteps"] == 0
    with real_node.s3.open_store(f"s3://{bucket_on_node}/gang") as store:
        assert store.read_manifest(st["history"][1]["resumedFrom"]).reason == "preemption"
    a, b = torch.load(tmp_path / "ref.pt"), torch.load(tmp_path / "gang.pt")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
