"""A shared checkpoint root, as two teams or a bucket full of other data make it: the
operator chooses, numbers and deletes only what its job owns (docs/contract.md section 8).
Real API server, real S3 server; the tests play kubelet."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from kubernetes import client

from lazarus_store import JobIdentity

from .conftest import Jobs
from .harness import FakeKubelet, OperatorProcess, wait_for
from .test_operator import T, env_of, names, reasons, running

pytestmark = pytest.mark.cluster

OTHER = JobIdentity("train", "team-b", "uid-team-b")


def commit_as(jobs: Jobs, root_name: str, job: JobIdentity, step: int, attempt: int) -> str:
    """What another job's trainer leaves under the same root."""
    store = jobs.store(root_name)
    w = store.begin(step=step, attempt=attempt)
    w.put_bytes("model.bin", b"y" * 64)
    ident = {"name": job.name, "namespace": job.namespace, "uid": job.uid}
    return w.commit(reason="periodic", job=ident).name


def test_a_foreign_newer_checkpoint_is_skipped_and_the_job_resumes_its_own(
    jobs: Jobs, kubelet: FakeKubelet, operator: OperatorProcess
) -> None:
    job = "shared"
    [own] = jobs.create_with_checkpoints(job, [(100, 1)])
    running(jobs, kubelet, job, 1)
    # Another team points its job at the same root; its trainer gets further.
    store = jobs.store(job)
    theirs_attempt = store.next_attempt()
    store.record_attempt(theirs_attempt, None, -1, job=OTHER)
    theirs = commit_as(jobs, job, OTHER, 900, theirs_attempt)

    kubelet.terminate(f"{job}-a1-0", 137, disruption="PreemptionByScheduler")
    # Attempt numbers are unique per root: ours goes above the other job's.
    nxt = theirs_attempt + 1
    running(jobs, kubelet, job, nxt)
    pod = kubelet.pod(f"{job}-a{nxt}-0")
    assert pod is not None and env_of(pod)["LAZARUS_RESUME_FROM"] == own
    # Counted, never named: the other namespace's checkpoints and job are its business.
    skipped = [e["message"] for e in jobs.events(job) if e["reason"] == "CheckpointSkipped"]
    assert "skipped 1 checkpoint(s): owned by jobs in other namespaces" in skipped, skipped
    told = json.dumps([jobs.status(job), [e["message"] for e in jobs.events(job)]])
    assert theirs not in told and "team-b" not in told and OTHER.uid not in told, told
    assert [(r.attempt, r.job and r.job.namespace) for r in store.attempts()] == [
        (1, jobs.ns),
        (theirs_attempt, "team-b"),
        (nxt, jobs.ns),
    ]

    for i in range(2):
        msg = {"v": 1, "outcome": "completed", "step": 1000}
        kubelet.terminate(f"{job}-a{nxt}-{i}", 0, message=msg)
    st = jobs.wait(job, lambda s: s.get("phase") == "Succeeded", T, "Succeeded")
    assert st["resumedFrom"]["name"] == own
    assert theirs in {c.name for c in store.list_checkpoints()}, "theirs must be left alone"


def test_delete_on_job_delete_at_a_bucket_root_keeps_everything_else(
    jobs: Jobs, kubelet: FakeKubelet, operator: OperatorProcess
) -> None:
    job = "purge-root"
    s3 = jobs.s3.client()
    s3.put_object(Bucket=jobs.bucket, Key="datasets/train.jsonl", Body=b"{}")
    root = f"s3://{jobs.bucket}"
    jobs.create(job, checkpoint={"uri": root, "deleteOnJobDelete": True})
    running(jobs, kubelet, job, 1)
    store = jobs.s3.open_store(root)
    w = store.begin(step=10, attempt=1)
    w.put_bytes("model.bin", b"x")
    own = w.commit(job={"name": job, "namespace": jobs.ns, "uid": jobs.uid(job)}).name
    store.record_attempt(2, None, -1, job=OTHER)
    w = store.begin(step=20, attempt=2)
    w.put_bytes("model.bin", b"x")
    theirs = w.commit(job={"name": OTHER.name, "namespace": OTHER.namespace, "uid": OTHER.uid}).name

    jobs.delete(job)
    wait_for(lambda: jobs.gone(job), T, "job gone (its checkpoints deleted first)")

    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=jobs.bucket).get("Contents", [])}
    assert "datasets/train.jsonl" in keys
    assert f"{theirs}/manifest.json" in keys and f"{theirs}/model.bin" in keys
    assert not [k for k in keys if k.startswith(own)]
    assert [r.job for r in store.attempts()] == [OTHER]


def test_a_filesystem_root_is_left_to_the_trainer(
    jobs: Jobs, kubelet: FakeKubelet, operator: OperatorProcess, tmp_path: Path
) -> None:
    """The operator cannot see a pod's volume: it must never create or read a path a
    tenant chose on its own filesystem. The trainer selects and fences."""
    root = tmp_path / "operator-fs" / "ckpt"
    job = jobs.create(checkpoint={"uri": str(root)})
    running(jobs, kubelet, job, 1)
    pod = kubelet.pod(f"{job}-a1-0")
    assert pod is not None and env_of(pod)["LAZARUS_RESUME_FROM"] == "auto"
    cond = jobs.condition(job, "StorageReady")
    assert cond is not None and cond["reason"] == "SelectedByTrainer", cond
    kubelet.terminate(f"{job}-a1-1", 137, disruption="PreemptionByScheduler")
    running(jobs, kubelet, job, 2)
    assert env_of(kubelet.pod(f"{job}-a2-0") or {})["LAZARUS_RESUME_FROM"] == "auto"
    assert "NoValidCheckpoint" not in reasons(jobs, job)
    assert not (tmp_path / "operator-fs").exists(), "the operator touched the path"
    assert names(kubelet, job, 1) == []


def test_delete_on_job_delete_needs_an_s3_root(jobs: Jobs) -> None:
    with pytest.raises(client.ApiException) as err:
        jobs.create(checkpoint={"uri": "/mnt/ckpt/job", "deleteOnJobDelete": True})
    assert err.value.status == 422
    assert "spec.checkpoint.deleteOnJobDelete needs an s3:// uri" in json.loads(err.value.body).get(
        "message", ""
    )
