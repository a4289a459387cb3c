"""The whole loop with real parts: operator process, process kubelet, reference trainer.

A TrainingJob trains the reference model; once a checkpoint is committed, the
pod is evicted through the Eviction API (as a drain or the scheduler would).
The kubelet sends SIGTERM, the trainer commits a preemption checkpoint, the
operator classifies the disruption and relaunches from it; the job succeeds
having lost no steps.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from lazarus_devstack.harness import LosableNode
from tests.conftest import ControlPlane, S3Server
from tests.operator.harness import OperatorProcess, wait_for

pytestmark = pytest.mark.e2e
STEPS = 60


def test_eviction_is_survived_with_no_lost_steps(
    cluster: ControlPlane,
    namespace: str,
    s3: S3Server,
    bucket: str,
    s3_secret: str,
    local_node: LosableNode,
    tmp_path: Path,
) -> None:
    core = client.CoreV1Api(cluster.api_client())
    custom = client.CustomObjectsApi(cluster.api_client())
    venv_bin = str(Path(sys.executable).parent)
    job = {
        "apiVersion": "lazarus.dev/v1alpha1",
        "kind": "TrainingJob",
        "metadata": {"name": "loop"},
        "spec": {
            "replicas": 1,
            "gracePeriodSeconds": 30,
            "checkpoint": {
                "uri": f"s3://{bucket}/loop",
                "endpoint": s3.endpoint_url,
                "addressingStyle": "path",
                "secretRef": {"name": s3_secret},
                "save": {"everySteps": 10},
            },
            "failurePolicy": {"backoff": {"initialSeconds": 1}},
            "template": {
                "spec": {
                    "nodeName": local_node.name,
                    "containers": [
                        {
                            "name": "trainer",
                            "image": "lazarus-trainer:dev",
                            "command": [f"{venv_bin}/lazarus-train"],
                            "args": ["--steps", str(STEPS), "--step-sleep", "0.1"],
                        }
                    ],
                }
            },
        },
    }
    operator = OperatorProcess(
        {**cluster.env(), "LAZARUS_PROGRESS_SECONDS": "1"}, namespace, tmp_path / "operator.log"
    )
    try:
        custom.create_namespaced_custom_object(
            "lazarus.dev", "v1alpha1", namespace, "trainingjobs", job
        )

        def status() -> dict[str, Any]:
            got = custom.get_namespaced_custom_object(
                "lazarus.dev", "v1alpha1", namespace, "trainingjobs", "loop"
            )
            return dict(got.get("status") or {})

        uri = f"s3://{bucket}/loop"
        wait_for(lambda: s3.committed_step(uri) is not None, 180, "a checkpoint")
        pod = "loop-a1-0"
        core.create_namespaced_pod_eviction(
            pod, namespace, client.V1Eviction(metadata=client.V1ObjectMeta(name=pod))
        )
        deadline = time.monotonic() + 300
        while status().get("phase") not in ("Succeeded", "Failed"):
            assert time.monotonic() < deadline, f"job did not finish: {status()}"
            time.sleep(0.5)
    finally:
        operator.stop()
        print(f"--- operator log (tail) ---\n{operator.log()[-3000:]}")
        for log in (tmp_path / "pods").glob("*/log"):
            print(f"--- {log.parent.name} ---\n{log.read_text(errors='replace')[-2000:]}")

    st = status()
    assert st["phase"] == "Succeeded", st
    assert st["attempt"] == 2 and st["restarts"] == {"disrupted": 1, "total": 1}
    assert st["lostSteps"] == 0
    resumed = st["history"][1]["resumedFrom"]
    with s3.open_store(f"s3://{bucket}/loop") as store:
        assert store.read_manifest(resumed).reason == "preemption"
        # The last step is also a save step, so its checkpoint may be periodic or final.
        final = store.latest_valid().chosen
        assert final is not None and final.step == STEPS and final.attempt == 2
