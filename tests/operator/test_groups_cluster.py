"""Replica groups (spec.faultTolerance) against the real API server and the operator
process: a crashed group's pod is replaced alone while the other keeps running, the
status the CRD keeps says so across cycles, and the lighthouse comes back under its name
once the old pod is gone. The trainers are the fake kubelet's; the real ones are
tests/e2e/test_ft_operator_e2e.py's."""

from __future__ import annotations

import pytest

from .conftest import Jobs
from .harness import FakeKubelet, OperatorProcess, wait_for
from .test_operator import T, env_of, names, reasons

pytestmark = pytest.mark.cluster
FT = {"replicaGroups": 2, "minReplicaGroups": 1}


def test_a_crashed_group_is_replaced_alone_and_the_lighthouse_comes_back(
    jobs: Jobs, kubelet: FakeKubelet, operator: OperatorProcess
) -> None:
    job = jobs.create(faultTolerance=FT)
    lighthouse, g0, g1 = f"{job}-a1-lighthouse", f"{job}-a1-0", f"{job}-a1-1"
    wait_for(lambda: set(names(kubelet, job, 1)) == {g0, g1, lighthouse}, T, "groups + lighthouse")
    svc = kubelet.core.read_namespaced_service(f"{job}-lighthouse", jobs.ns)
    assert svc.spec.selector == {"lazarus.dev/job": job, "lazarus.dev/role": "lighthouse"}
    assert svc.spec.cluster_ip == "None"  # DNS names the pod itself: no kube-proxy needed
    jobs.wait(job, lambda s: s.get("phase") == "Running", T, "Running")
    g0_uid = (kubelet.pod(g0) or {})["metadata"]["uid"]

    kubelet.terminate(g1, 137, reason="Error")
    replacement = f"{job}-a1-1-r1"
    wait_for(lambda: kubelet.pod(replacement) is not None, T, "group 1's replacement")
    env = env_of(kubelet.pod(replacement) or {})
    assert env["LAZARUS_FT_REPLACEMENT"] == "1" and env["LAZARUS_ATTEMPT"] == "1"
    wait_for(lambda: kubelet.pod(g1) is None, T, "the crashed pod deleted")
    st = jobs.wait(job, lambda s: s.get("phase") == "Running", T, "Running again")
    assert (kubelet.pod(g0) or {})["metadata"]["uid"] == g0_uid, "the survivor was touched"
    assert st["attempt"] == 1 and "restarts" not in st
    ft = st["faultTolerance"]
    assert ft["generations"] == [0, 1] and ft["replacements"] == {"failed": 1, "total": 1}
    assert ft["lastReplacement"]["pod"] == g1 and ft["lastReplacement"]["exitCode"] == 137
    assert "GroupReplaced" in reasons(jobs, job)

    # The lighthouse ends: deleted, then recreated under its name; the groups untouched.
    old = (kubelet.pod(lighthouse) or {})["metadata"]["uid"]
    kubelet.terminate(lighthouse, 1)
    wait_for(
        lambda: (kubelet.pod(lighthouse) or {"metadata": {"uid": old}})["metadata"]["uid"] != old,
        T,
        "a new lighthouse pod",
    )
    st = jobs.wait(
        job, lambda s: (s.get("faultTolerance") or {}).get("lighthouseRestarts") == 1, T, "counted"
    )
    assert set(names(kubelet, job, 1)) == {g0, replacement, lighthouse}
    assert st["faultTolerance"]["generations"] == [0, 1] and "restarts" not in st

    # Both groups complete: the job succeeded in its first attempt; the lighthouse goes.
    kubelet.terminate(g0, 0)
    kubelet.terminate(replacement, 0)
    st = jobs.wait(job, lambda s: s.get("phase") == "Succeeded", T, "Succeeded")
    assert st["attempt"] == 1
    wait_for(lambda: kubelet.pod(lighthouse) is None, T, "the lighthouse deleted")


def test_too_few_groups_left_restart_the_whole_gang(
    jobs: Jobs, kubelet: FakeKubelet, operator: OperatorProcess
) -> None:
    """minReplicaGroups defaults to a majority: 2 of 2, so one crash restarts all."""
    job = jobs.create(faultTolerance={"replicaGroups": 2})
    wait_for(lambda: len(names(kubelet, job, 1)) == 3, T, "groups + lighthouse")
    jobs.wait(job, lambda s: s.get("phase") == "Running", T, "Running")
    kubelet.terminate(f"{job}-a1-1", 1)
    wait_for(
        lambda: set(names(kubelet, job, 2)) == {f"{job}-a2-{i}" for i in ("0", "1", "lighthouse")},
        T,
        "attempt 2, whole",
    )
    st = jobs.status(job)
    assert st["restarts"] == {"failed": 1, "total": 1} and "faultTolerance" not in st


def test_a_whole_gang_restart_after_a_replacement_starts_every_group_afresh(
    jobs: Jobs, kubelet: FakeKubelet, operator: OperatorProcess
) -> None:
    """Group 1 replaced, then its replacement finds no peer (exit 76): attempt 2 starts
    every group at generation 0 (the status patch must clear the old generations, or
    attempt 2's pods would be deleted as stale and replaced without a peer for ever)."""
    job = jobs.create(faultTolerance=FT, failurePolicy={"backoff": {"initialSeconds": 1}})
    wait_for(lambda: len(names(kubelet, job, 1)) == 3, T, "groups + lighthouse")
    jobs.wait(job, lambda s: s.get("phase") == "Running", T, "Running")
    kubelet.terminate(f"{job}-a1-1", 1)
    wait_for(lambda: kubelet.pod(f"{job}-a1-1-r1") is not None, T, "the replacement")
    jobs.wait(job, lambda s: s.get("phase") == "Running", T, "Running")
    kubelet.terminate(f"{job}-a1-1-r1", 76)
    fresh = {f"{job}-a2-{i}" for i in ("0", "1", "lighthouse")}
    wait_for(lambda: set(names(kubelet, job, 2)) == fresh, T, "attempt 2, every group afresh")
    st = jobs.wait(job, lambda s: s.get("phase") == "Running", T, "attempt 2 Running")
    assert st["attempt"] == 2 and st["restarts"] == {"failed": 1, "total": 1}
    assert "generations" not in st["faultTolerance"], st["faultTolerance"]
    assert st["faultTolerance"]["replacements"] == {"failed": 1, "total": 1}
    assert set(names(kubelet, job, 2)) == fresh  # none deleted as stale
