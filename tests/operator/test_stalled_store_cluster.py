"""A tenant's S3 endpoint that accepts connections and never answers (a stalled
store) holds a thread per call for minutes (the client's read timeout, retried):
the other jobs' launches and restarts must go on meanwhile."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from .conftest import Jobs
from .harness import FakeKubelet, OperatorProcess
from .test_operator import running

pytestmark = pytest.mark.cluster

# More than the operator's threads for API calls (32): on shared threads, these
# jobs' storage calls alone would take every one of them.
STALLED_JOBS = 40


@contextmanager
def stalled_endpoint() -> Iterator[str]:
    """An endpoint whose kernel completes every connection and nobody ever reads it."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(1024)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        sock.close()


def test_jobs_on_a_stalled_store_do_not_hold_back_the_others(
    jobs: Jobs, kubelet: FakeKubelet, operator: OperatorProcess
) -> None:
    with stalled_endpoint() as endpoint:
        stalled = [jobs.create(checkpoint={"endpoint": endpoint}) for _ in range(STALLED_JOBS)]
        job = jobs.create(failurePolicy={"backoff": {"initialSeconds": 1, "maxSeconds": 1}})
        running(jobs, kubelet, job, 1)
        kubelet.terminate(f"{job}-a1-1", 1, message={"v": 1, "outcome": "error", "step": 5})
        running(jobs, kubelet, job, 2)
        # The stalled jobs are still waiting on their store, not launched without it.
        assert not any(kubelet.pods(j) for j in stalled)
