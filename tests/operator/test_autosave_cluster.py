"""The automatic interval's operator side against the real API server: the running
attempt's pods carry the failure rate in their annotation (the trainer's live channel,
contract section 5a) and status.saveInterval shows it with its evidence; a crash raises
it on the next attempt's pods; a job without `auto` gets neither (issue 29)."""

from __future__ import annotations

import pytest

from lazarus_contract.interval import ANNOTATION_FAILURE_RATE

from .conftest import Jobs
from .harness import FakeKubelet, OperatorProcess, wait_for
from .test_operator import T, running

pytestmark = pytest.mark.cluster
AUTO = {"save": {"auto": {"enabled": True, "priorMTBFSeconds": 3600}}}


def rate_on(kubelet: FakeKubelet, pod: str) -> float | None:
    got = kubelet.pod(pod)
    value = ((got or {}).get("metadata", {}).get("annotations") or {}).get(ANNOTATION_FAILURE_RATE)
    return float(value) if value is not None else None


def test_the_rate_reaches_the_pods_and_status_and_a_crash_raises_it(
    jobs: Jobs, kubelet: FakeKubelet, operator: OperatorProcess
) -> None:
    job = jobs.create(checkpoint=AUTO)
    running(jobs, kubelet, job, 1)
    pods = (f"{job}-a1-0", f"{job}-a1-1")
    wait_for(lambda: all(rate_on(kubelet, p) is not None for p in pods), T, "the pods' rate")
    first = rate_on(kubelet, f"{job}-a1-0")
    assert first == pytest.approx(1.0, rel=0.05)  # the prior: one failure an hour
    st = jobs.status(job)["saveInterval"]
    assert st["failuresPerHour"] == first and st["failures"] == 0
    # A crash while training (its progress signal at step 5): a save could have helped. A
    # crash before any step (no step in the message) would not count.
    progress = {"v": 1, "outcome": "running", "step": 5}
    kubelet.terminate(f"{job}-a1-1", 1, message=progress)
    running(jobs, kubelet, job, 2)
    wait_for(lambda: (rate_on(kubelet, f"{job}-a2-0") or 0) > 1.5, T, "a raised rate")
    st = jobs.status(job)["saveInterval"]
    assert st["failures"] == 1 and st["failuresPerHour"] == pytest.approx(2.0, rel=0.05)


def test_a_job_without_auto_gets_no_rate(
    jobs: Jobs, kubelet: FakeKubelet, operator: OperatorProcess
) -> None:
    job = jobs.create()
    running(jobs, kubelet, job, 1)
    assert rate_on(kubelet, f"{job}-a1-0") is None
    assert "saveInterval" not in jobs.status(job)
