"""An endpoint that answers HTTP but not as S3 is StorageReady=False, reason
EndpointNotS3, and the job does not launch: not a crash loop on a 404
(`ObjectMissing: listing /`), not a fresh start on a 200 that read as an empty
root (issue 22, item 4)."""

from __future__ import annotations

import time

import pytest

from tests.store.not_s3 import not_s3_server

from .conftest import Jobs
from .harness import FakeKubelet, OperatorProcess, wait_for
from .test_operator import T, names, running

pytestmark = pytest.mark.cluster


@pytest.mark.parametrize("kind", ["404-bare", "404-html", "200-xml", "200-json"])
def test_an_endpoint_that_is_not_s3_is_storage_ready_false_endpoint_not_s3(
    jobs: Jobs, kubelet: FakeKubelet, operator: OperatorProcess, kind: str
) -> None:
    with not_s3_server(kind) as endpoint:
        job = jobs.create(checkpoint={"endpoint": endpoint})
        cond = wait_for(
            lambda: (c := jobs.condition(job, "StorageReady")) and c["status"] == "False" and c,
            T,
            "StorageReady=False",
        )
        assert cond["reason"] == "EndpointNotS3", cond
        assert "does not answer as an S3 server" in cond["message"], cond
        assert endpoint in cond["message"], cond
        time.sleep(3)
        assert names(kubelet, job) == []
        # The endpoint fixed, the job launches.
        jobs.patch_spec(job, {"checkpoint": {"endpoint": jobs.s3.endpoint_url}})
        running(jobs, kubelet, job, 1)
    assert "Traceback" not in operator.log()
