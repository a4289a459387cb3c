"""The operator's own storage credentials act for a tenant only where the platform
said so (owncreds.py): a job without a secretRef, pointed at another namespace's
root, reads and writes nothing there and learns nothing about it. Real API server,
real S3 server; the operator holds credentials that would work on every root."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from lazarus_operator import storage
from lazarus_operator.builders import JobRef
from lazarus_operator.lanes import storage_lane
from lazarus_operator.spec import CheckpointSpec
from lazarus_store import JobIdentity
from lazarus_store.errors import AttemptTaken
from tests.conftest import S3Server

from .conftest import Jobs
from .harness import GROUP, PLURAL, VERSION, FakeKubelet, OperatorProcess, wait_for
from .test_operator import T, names, reasons, running

pytestmark = pytest.mark.cluster

# Team B's job: what team A must not learn.
THEIRS = JobIdentity("secret-project", "team-b", "uid-of-team-b-job")


def operator_env(jobs: Jobs, allowed: dict[str, list[Any]] | None = None) -> dict[str, str]:
    """The operator's own credentials: they open every root of the S3 server."""
    env = {"AWS_ACCESS_KEY_ID": jobs.s3.access_key, "AWS_SECRET_ACCESS_KEY": jobs.s3.secret_key}
    if allowed is not None:
        env["LAZARUS_OPERATOR_CREDENTIALS"] = json.dumps(allowed)
    return env


def create_without_secret(
    jobs: Jobs, name: str, uri: str, endpoint: str | None = None, **checkpoint: Any
) -> str:
    body = jobs.body(name, checkpoint={"uri": uri, **checkpoint})
    del body["spec"]["checkpoint"]["secretRef"]
    if endpoint is not None:
        body["spec"]["checkpoint"]["endpoint"] = endpoint
    jobs.custom.create_namespaced_custom_object(GROUP, VERSION, jobs.ns, PLURAL, body)
    return name


def team_b_root(jobs: Jobs) -> tuple[str, list[str]]:
    """Team B's root with its fence log and two checkpoints."""
    uri = f"s3://{jobs.bucket}/team-b"
    store = jobs.s3.open_store(uri)
    made = []
    for attempt, step in ((1, 100), (2, 200)):
        store.record_attempt(attempt, None, -1, job=THEIRS)
        w = store.begin(step=step, attempt=attempt)
        w.put_bytes("model.bin", b"b" * 64)
        ident = {"name": THEIRS.name, "namespace": THEIRS.namespace, "uid": THEIRS.uid}
        made.append(w.commit(reason="periodic", job=ident).name)
    return uri, made


def objects(jobs: Jobs) -> dict[str, tuple[str, int]]:
    """Every object of the bucket: key -> (ETag, size)."""
    listed = jobs.s3.client().list_objects_v2(Bucket=jobs.bucket).get("Contents", [])
    return {o["Key"]: (o["ETag"], o["Size"]) for o in listed}


@pytest.fixture
def listener() -> Iterator[tuple[str, Callable[[], bool]]]:
    """An endpoint that answers nothing but remembers whether anyone connected."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    sock.setblocking(False)

    def connected() -> bool:
        try:
            conn, _ = sock.accept()
        except BlockingIOError:
            return False
        conn.close()
        return True

    yield f"http://127.0.0.1:{sock.getsockname()[1]}", connected
    with contextlib.suppress(OSError):
        sock.close()


def credentials_required(jobs: Jobs, job: str) -> dict[str, Any]:
    def surfaced(st: dict[str, Any]) -> bool:
        conds = st.get("conditions", [])
        return any(
            c["type"] == "StorageReady"
            and c["status"] == "False"
            and c["reason"] == "CredentialsRequired"
            for c in conds
        )

    st = jobs.wait(job, surfaced, T, "StorageReady=False CredentialsRequired")
    wait_for(lambda: "CredentialsRequired" in reasons(jobs, job), T, "CredentialsRequired event")
    return st


def told(jobs: Jobs, job: str) -> str:
    """Everything the job's namespace can read about the job: status and events."""
    events = [(e["reason"], e["message"]) for e in jobs.events(job)]
    return json.dumps([jobs.status(job), events])


def test_a_job_without_credentials_learns_nothing_of_another_namespaces_root(
    jobs: Jobs,
    kubelet: FakeKubelet,
    start_operator: Callable[..., OperatorProcess],
    listener: tuple[str, Callable[[], bool]],
) -> None:
    uri, theirs = team_b_root(jobs)
    before, fence = objects(jobs), jobs.s3.open_store(uri).attempts()
    endpoint, connected = listener
    start_operator(env=operator_env(jobs))

    peek = create_without_secret(jobs, "peek", uri)
    probe = create_without_secret(jobs, "probe", uri, endpoint)
    purge = create_without_secret(jobs, "purge", uri, deleteOnJobDelete=True)
    st = credentials_required(jobs, peek)
    cond = next(c for c in st["conditions"] if c["type"] == "StorageReady")
    assert "secretRef" in cond["message"] and "operatorCredentials" in cond["message"]
    credentials_required(jobs, probe)
    credentials_required(jobs, purge)
    # Deleting it deletes nothing there, and its finalizer does not hold it for ever.
    jobs.delete(purge)
    wait_for(lambda: jobs.gone(purge), T, "the job gone, its finalizer released")

    assert names(kubelet, peek) == [] and names(kubelet, probe) == []
    assert "attempt" not in jobs.status(peek)
    assert objects(jobs) == before, "the operator wrote at team B's root"
    assert jobs.s3.open_store(uri).attempts() == fence, "team A's attempt is in B's fence log"
    assert not connected(), "the operator reached the endpoint at all"
    seen = told(jobs, peek)
    for secret in (*theirs, THEIRS.name, THEIRS.uid):
        assert secret not in seen, f"{secret!r} leaked into the job's status or events"


def test_with_the_platforms_opt_in_only_the_allowed_roots_work(
    jobs: Jobs,
    kubelet: FakeKubelet,
    start_operator: Callable[..., OperatorProcess],
    listener: tuple[str, Callable[[], bool]],
) -> None:
    uri_b, _ = team_b_root(jobs)
    root_a = f"s3://{jobs.bucket}/team-a"
    fence_b = jobs.s3.open_store(uri_b).attempts()
    allowed = {jobs.ns: [{"root": root_a, "endpoint": jobs.s3.endpoint_url}]}
    start_operator(env=operator_env(jobs, allowed))
    endpoint, connected = listener

    mine = create_without_secret(jobs, "mine", f"{root_a}/mine")
    # A string prefix of the allowed root, another team's, the allowed root elsewhere.
    refused = [
        create_without_secret(jobs, "neighbour", f"{root_a}-b/x"),
        create_without_secret(jobs, "theirs", uri_b),
        create_without_secret(jobs, "elsewhere", f"{root_a}/x", endpoint),
    ]
    running(jobs, kubelet, mine, 1)
    cond = jobs.condition(mine, "StorageReady")
    assert cond is not None and cond["status"] == "True", cond
    [rec] = jobs.s3.open_store(f"{root_a}/mine").attempts()
    assert rec.attempt == 1 and rec.job is not None and rec.job.namespace == jobs.ns
    for job in refused:
        credentials_required(jobs, job)
        assert names(kubelet, job) == []
    assert jobs.s3.open_store(uri_b).attempts() == fence_b
    assert not [k for k in objects(jobs) if k.startswith("team-a-b/")]
    assert not connected()


def test_a_taken_attempt_does_not_name_the_other_namespaces_job(s3: S3Server, bucket: str) -> None:
    """Two jobs racing for one attempt number on a shared root: the loser's condition
    says so without naming the winner (it may be another namespace's)."""
    uri = f"s3://{bucket}/shared"
    s3.open_store(uri).record_attempt(1, None, -1, job=THEIRS)
    ck = CheckpointSpec(uri, endpoint=s3.endpoint_url, addressing_style="path", region=s3.region)
    cred = storage.Credentials(s3.access_key, s3.secret_key, s3.region)
    job = JobRef("mine", "team-a", "uid-mine")

    async def record() -> None:
        await storage.record_attempt(ck, cred, 1, None, -1, job=job, lane=storage_lane())

    with pytest.raises(AttemptTaken) as err:
        asyncio.run(record())
    msg = storage.problem_of(err.value, uri).message
    assert "attempt 1" in msg and "another job" in msg
    assert THEIRS.namespace not in msg and THEIRS.name not in msg and THEIRS.uid not in msg
