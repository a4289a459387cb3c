"""Ownership on a shared root: selection, retention, fencing and deletion act only on
what the job owns (docs/contract.md section 8). Both backends; the pure rule as a table."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from lazarus_contract import ATTEMPTS_LOG, checkpoint_name
from lazarus_store import (
    AttemptRecord,
    AttemptTaken,
    CheckpointStore,
    FencedOut,
    JobIdentity,
    Owner,
    RetentionPolicy,
    open_store,
)
from lazarus_store.cleanup import delete_job_checkpoints
from lazarus_store.ownership import owns_attempt, why_not_owned

from .conftest import Raw

A = JobIdentity("train", "team-a", "uid-a")
A_OLD = JobIdentity("train", "team-a", "uid-a0")  # the same job before it was re-created
B = JobIdentity("train", "team-b", "uid-b")
HAND = JobIdentity()
OWNER_A = Owner("team-a", "train", "uid-a")


def save(store: CheckpointStore, step: int, attempt: int, job: JobIdentity) -> str:
    w = store.begin(step=step, attempt=attempt)
    w.put_bytes("state.bin", f"{job.uid}-{step}".encode())
    j = {"name": job.name, "namespace": job.namespace, "uid": job.uid}
    return w.commit(reason="periodic", epoch=0, job=j).name


def launch(store: CheckpointStore, job: JobIdentity, resume: str | None = None) -> int:
    """What the operator does before an attempt's pods exist: a root-unique number."""
    n = store.next_attempt()
    step = int(resume.split("-")[1]) if resume else -1
    store.record_attempt(n, resume, step, job=job)
    return n


def rec(attempt: int, job: JobIdentity | None) -> AttemptRecord:
    return AttemptRecord(attempt, None, -1, "", job)


@pytest.mark.unit
@pytest.mark.parametrize(
    ("owner", "job", "attempt", "records", "owned", "phrase"),
    [
        (OWNER_A, A, 1, [], True, ""),
        (OWNER_A, B, 1, [rec(1, B)], False, "owned by job team-b/train"),
        (OWNER_A, A_OLD, 1, [rec(1, A_OLD)], True, ""),  # re-created: recorded lineage
        (OWNER_A, A_OLD, 1, [rec(1, None)], True, ""),  # a record from before identities
        (OWNER_A, A_OLD, 1, [], False, "does not record"),  # same name, no record: not proven
        (OWNER_A, A_OLD, 1, [rec(1, B)], False, "does not record"),
        (OWNER_A, HAND, 1, [], False, "names no job"),
        (Owner("team-a", "train", "uid-a", accept_unowned=True), HAND, 1, [], True, ""),
        (None, B, 1, [], True, ""),  # no owner (a trainer run by hand): no filtering
    ],
)
def test_ownership_rule(
    owner: Owner | None,
    job: JobIdentity,
    attempt: int,
    records: list[AttemptRecord],
    owned: bool,
    phrase: str,
) -> None:
    why = why_not_owned(owner, job, attempt, records)
    assert (why is None) == owned, why
    assert phrase in (why or "")


@pytest.mark.unit
@pytest.mark.parametrize(
    ("records", "owned"),
    [([rec(3, A)], True), ([rec(3, A_OLD)], True), ([rec(3, B)], False), ([], False)],
)
def test_uncommitted_prefix_belongs_to_the_attempts_job(
    records: list[AttemptRecord], owned: bool
) -> None:
    assert owns_attempt(OWNER_A, 3, records) is owned


def test_foreign_newer_checkpoint_is_skipped_naming_its_owner(store: CheckpointStore) -> None:
    a1 = launch(store, A)
    mine = save(store, 100, a1, A)
    b1 = launch(store, B)
    theirs = save(store, 900, b1, B)
    assert b1 == a1 + 1, "attempt numbers are unique per root"

    sel = store.latest_valid(attempt=store.next_attempt(), owner=OWNER_A)
    assert sel.chosen is not None and sel.chosen.name == mine
    skipped = {k.name: k.reason for k in sel.skipped}
    assert "team-b/train" in skipped[theirs]
    # Without an owner (a person at the CLI) everything still counts.
    assert store.latest_valid().chosen is not None


def test_retention_never_counts_or_deletes_another_jobs_checkpoints(
    store: CheckpointStore,
) -> None:
    # Two trainers run by hand (no fence log) at attempt 1: only identities tell them apart.
    own = [save(store, s, 1, A) for s in (10, 20, 30)]
    foreign = [save(store, s, 1, B) for s in (100, 200, 300)]

    plan = store.prune(RetentionPolicy(keep_latest=2), owner=OWNER_A, dry_run=False)
    assert plan.removals == (own[0],)
    names = {c.name for c in store.list_checkpoints()}
    assert names == {*own[1:], *foreign}, "B's newer checkpoints pushed out A's own"


def test_recreated_job_owns_its_earlier_incarnations_checkpoints(store: CheckpointStore) -> None:
    old = launch(store, A_OLD)
    earlier = save(store, 50, old, A_OLD)
    new = launch(store, A, resume=earlier)
    assert new == old + 1
    sel = store.latest_valid(attempt=new, owner=OWNER_A)
    assert sel.chosen is not None and sel.chosen.name == earlier


def test_a_jobs_fence_ignores_another_jobs_newer_attempt(store: CheckpointStore) -> None:
    a1 = launch(store, A)
    launch(store, B)  # attempt 2, another job on the same root
    w = store.begin(step=10, attempt=a1)
    w.put_bytes("x", b"x")
    job_a = {"name": A.name, "namespace": A.namespace, "uid": A.uid}
    assert w.commit(reason="periodic", job=job_a).name == checkpoint_name(10, a1)
    # A newer attempt of A's own lineage still fences it.
    launch(store, A, resume=checkpoint_name(10, a1))
    w = store.begin(step=20, attempt=a1)
    w.put_bytes("x", b"x")
    with pytest.raises(FencedOut):
        w.commit(reason="periodic", job=job_a)


def test_an_attempt_number_belongs_to_one_job(store: CheckpointStore) -> None:
    store.record_attempt(1, None, -1, job=A)
    store.record_attempt(1, None, -1, job=A)  # idempotent for the same job
    with pytest.raises(AttemptTaken, match="team-a/train"):
        store.record_attempt(1, None, -1, job=B)
    assert [r.job for r in store.attempts()] == [A]


def test_deleting_a_job_removes_only_what_it_owns(store: CheckpointStore, raw: Raw) -> None:
    a1 = launch(store, A)
    own = [save(store, s, a1, A) for s in (10, 20)]
    w = store.begin(step=30, attempt=a1)  # A's save in progress when the job was deleted
    w.put_bytes("partial.bin", b"p")
    store.quarantine(own[0], "test")
    b1 = launch(store, B)
    foreign = save(store, 99, b1, B)
    raw.put("unrelated/data.csv", b"not a checkpoint")
    raw.put("step-000000000005-a0009/orphan.bin", b"no record names attempt 9")

    done = delete_job_checkpoints(store, OWNER_A)

    assert sorted(done.checkpoints) == sorted([*own, checkpoint_name(30, a1)])
    left = raw.listing()
    assert "unrelated/data.csv" in left
    assert "step-000000000005-a0009/orphan.bin" in left
    assert f"{foreign}/manifest.json" in left
    assert not [k for k in left if k.startswith(tuple(own))]
    assert f"_lazarus/quarantine/{own[0]}.json" not in left
    assert [r.job for r in store.attempts()] == [B], "B's fence records must survive"
    assert ATTEMPTS_LOG in left


@pytest.mark.cluster
def test_deleting_a_job_at_a_bucket_root_keeps_the_buckets_other_objects(
    s3: Any, bucket: str
) -> None:
    client = s3.client()
    client.put_object(Bucket=bucket, Key="datasets/train.jsonl", Body=b"{}")
    client.put_object(Bucket=bucket, Key="other-team/step-000000000001-a0001/x", Body=b"x")
    store: CheckpointStore = s3.open_store(f"s3://{bucket}")
    save(store, 10, launch(store, A), A)

    delete_job_checkpoints(store, OWNER_A)

    keys = sorted(o["Key"] for o in client.list_objects_v2(Bucket=bucket).get("Contents", []))
    assert keys == ["datasets/train.jsonl", "other-team/step-000000000001-a0001/x"]


@pytest.mark.unit
def test_legacy_fence_log_without_identities_still_reads(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "_lazarus").mkdir(parents=True)
    (root / ATTEMPTS_LOG).write_text(
        '{"attempts": [{"attempt": 1, "resumeFrom": null, "resumeStep": -1}]}'
    )
    store = open_store(str(root))
    assert store.attempts() == [AttemptRecord(1, None, -1, "", None)]
    assert store.next_attempt() == 2
