"""Fault-tolerant replica groups on the real node (docs/fault-tolerance.md, issue 26).

Two groups of tests/trainer/ft_script.py in real containers, their lighthouse pod beside
them, found through CoreDNS (the lighthouse's headless Service, each group's FQDN
hostname) over the pod network. Group 1's trainer is SIGKILLed on the host mid-run: the
operator replaces that group alone, group 0 trains on in the same process, the
replacement heals from its live peer without a store read, and the job succeeds in its
first attempt with both groups' weights and optimizer state equal. (The node-loss case
needs a second node: one real node cannot lose a group's node and keep the other's.)
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from lazarus_devstack.node import _hierarchies
from tests.node.conftest import Job, RealNode, job_body, trainer_template
from tests.operator.harness import OperatorProcess
from tests.trainer.ft_harness import (
    SCRIPT,
    StepLogs,
    check_samples,
    contiguous_to_the_end,
    stalls,
    states_equal,
)

pytestmark = pytest.mark.e2e
STEPS, PAUSE, KILL_AT = 500, 0.1, 40
NAME = "ft"  # short: <pod>.<job>.<namespace>.svc.cluster.local stays within 64 characters


def _template(out: Path) -> dict[str, Any]:
    """ft_script.py as the trainer, the venv's python (first on PATH), its folder and
    `out` (shared with the host) mounted at their host paths."""
    template = trainer_template(
        [SCRIPT, str(out), str(STEPS), str(PAUSE)],
        command=["python"],
        env=[{"name": "OMP_NUM_THREADS", "value": "1"}],
    )
    spec = template["spec"]
    script_dir = str(Path(SCRIPT).parent)
    spec["volumes"] += [
        {"name": "out", "hostPath": {"path": str(out), "type": "Directory"}},
        {"name": "ft-script", "hostPath": {"path": script_dir, "type": "Directory"}},
    ]
    spec["containers"][0]["volumeMounts"] += [
        {"name": "out", "mountPath": str(out)},
        {"name": "ft-script", "mountPath": script_dir, "readOnly": True},
    ]
    return template


def kill_trainer(real_node: RealNode, job: Job, pod: str) -> int:
    """SIGKILL the pod's trainer process on the host, found in its container's cgroup
    (as the kernel's OOM killer or a crash would end it); returns its pid."""
    status = job.core.read_namespaced_pod(pod, job.ns).status
    cid = status.container_statuses[0].container_id.split("://")[-1]
    for hierarchy in _hierarchies(unified=True):
        for procs in (hierarchy / real_node.node.cgroup).rglob(f"{cid}/cgroup.procs"):
            for pid in (int(p) for p in procs.read_text().split()):
                with contextlib.suppress(OSError):
                    if SCRIPT.encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                        os.kill(pid, signal.SIGKILL)
                        return pid
    raise AssertionError(f"no trainer process of {pod} (container {cid}) on the host")


def test_a_killed_group_is_replaced_alone_and_heals_from_its_peer(
    real_node: RealNode,
    node_namespace: str,
    bucket_on_node: str,
    operator: OperatorProcess,
    tmp_path: Path,
) -> None:
    tmp_path.chmod(0o777)
    logs = StepLogs(tmp_path)
    job = Job(real_node, node_namespace, NAME)
    ft = {"replicaGroups": 2, "minReplicaGroups": 1, "heartbeatTimeoutMilliseconds": 1000}
    body = job_body(
        NAME, bucket_on_node, real_node, _template(tmp_path), replicas=2, faultTolerance=ft
    )
    body["spec"]["checkpoint"]["save"] = {"everySteps": 100}
    job.create(body)
    try:
        logs.wait_step(1, KILL_AT, timeout=240)
        kill_trainer(real_node, job, f"{NAME}-a1-1")
        killed_at = time.time()
        st = job.wait_finished(300)
    finally:
        print(job.pod_logs())
    assert st["phase"] == "Succeeded" and st["attempt"] == 1, st
    assert "total" not in (st.get("restarts") or {}), st
    ft = st["faultTolerance"]
    assert ft["replacements"] == {"failed": 1, "total": 1}, ft
    assert ft["generations"] == [0, 1], ft
    last = ft["lastReplacement"]
    got = {k: last.get(k) for k in ("group", "attempt", "generation", "cause", "pod", "exitCode")}
    want = {"group": 1, "attempt": 1, "generation": 1, "cause": "Failed", "pod": f"{NAME}-a1-1"}
    assert got == {**want, "exitCode": 137}, last
    # Each container's trainer is its PID 1: a process is told apart by its start row.
    rows0 = logs.rows(0)
    assert [r["event"] for r in rows0].count("start") == 1, "group 0 restarted"
    assert contiguous_to_the_end(logs, 0, STEPS), "group 0 skipped or redid steps"
    print(f"group 0's longest gaps between steps: {[round(s, 2) for s in stalls(rows0)[:3]]} s")
    assert any(r["n"] == 1 for r in logs.steps(0) if r["t"] > killed_at), "group 0 went on alone"
    rows1 = logs.rows(1)
    starts = [i for i, r in enumerate(rows1) if r["event"] == "start"]
    assert len(starts) == 2, rows1[:1]
    killed, replacement = rows1[: starts[1]], rows1[starts[1] :]
    assert not any(r["event"] == "end" for r in killed), "the killed trainer ended on its own"
    start, end = replacement[0], replacement[-1]
    assert start["store_reads"] == [] and start["resumed"] is None, "the replacement read the store"
    assert end["event"] == "end" and end["store_reads"] == [], "the replacement read the store"
    assert end["healed_at"] is not None and end["healed_at"] >= KILL_AT, end
    # After the heal the groups average their gradients again: gloo across the pod network.
    # (Not every step: the one it heals in counts its peer alone, and on a loaded machine
    # a group late by torchft's join timeout misses a quorum.)
    for g in (0, 1):
        after = [r["n"] for r in logs.steps(g) if r["step"] > end["healed_at"] + 1]
        print(f"group {g} after the heal: {after.count(2)} steps of 2, {after.count(1)} of 1")
        assert 2 in after, f"group {g} trained alone after the heal"
    assert states_equal(logs.final(0), logs.final(1))
    print(f"{check_samples(logs)} samples, each once; healed at step {end['healed_at']}")
