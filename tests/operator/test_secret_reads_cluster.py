"""The Secret a job names is read by GET and kept (secretcache), yet a fix to it is
seen at the job's next retry: what was refused is not kept (issue 28)."""

from __future__ import annotations

from typing import Any

import pytest

from .conftest import SECRET, Jobs
from .harness import FakeKubelet, OperatorProcess

pytestmark = pytest.mark.cluster
# Well under the cache's 5 minutes: only a dropped entry lets the job go on in time.
T = 60


def storage_reason(jobs: Jobs, job: str) -> str | None:
    cond = jobs.condition(job, "StorageReady")
    return None if cond is None else str(cond["reason"])


def test_a_secret_fixed_after_a_missing_key_is_read_again_at_once(
    jobs: Jobs, kubelet: FakeKubelet, operator: OperatorProcess
) -> None:
    full: dict[str, Any] = jobs.core.read_namespaced_secret(SECRET, jobs.ns).data
    partial = {"AWS_ACCESS_KEY_ID": full["AWS_ACCESS_KEY_ID"]}
    jobs.core.create_namespaced_secret(jobs.ns, {"metadata": {"name": "partial"}, "data": partial})
    job = jobs.create(checkpoint={"secretRef": {"name": "partial"}})
    jobs.wait(
        job,
        lambda s: any(c["reason"] == "SecretKeyMissing" for c in s.get("conditions", [])),
        T,
        "SecretKeyMissing",
    )
    assert kubelet.pods(job) == []
    jobs.core.patch_namespaced_secret("partial", jobs.ns, {"data": full})
    jobs.wait(job, lambda s: s.get("phase") == "Running", T, "Running with the fixed Secret")
    assert storage_reason(jobs, job) != "SecretKeyMissing"
