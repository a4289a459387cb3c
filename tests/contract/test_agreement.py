"""The operator and the trainer agree on every shared rule (docs/contract.md sections 6-8),
each through its own code path, over a table of roots and attempt histories:

- root kind: the operator's `storage.delegated`, the trainer's `Storage.fences` and the
  store's backend for the URI all say the same (S3: the operator records attempts; a
  path: the trainer does);
- attempt numbering: launching jobs in a given order on one root, the operator (S3 root:
  `attempts.next_attempt` over the store's `next_attempt`, then its fence record) and
  the trainer (filesystem root: `Storage` numbering from the operator's per-job count,
  then rank 0's fence record) give every launch the same number, unique per root and
  increasing per job, and every rank of a trainer's attempt reads the same number.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from lazarus_operator import attempts as op_attempts
from lazarus_operator import storage as op_storage
from lazarus_operator.spec import CheckpointSpec
from lazarus_store import CheckpointStore, JobIdentity, open_store
from lazarus_store.backends.fs import FsBackend
from lazarus_store.backends.s3 import S3Backend
from lazarus_store.cleanup import delete_job_checkpoints
from lazarus_store.ownership import Owner, owner_of
from lazarus_trainer.storage import Storage

pytestmark = pytest.mark.unit

# --- root kind -------------------------------------------------------------------------
# (uri, S3?) - odd spellings included: the store reads the scheme as URL parsing does.
ROOTS = [
    ("s3://bucket/prefix", True),
    ("s3://bucket", True),
    ("s3://bucket/a/b/", True),
    ("S3://bucket/prefix", True),  # the scheme in any case
    (" s3://bucket/prefix", True),  # leading blanks are dropped by URL parsing
    ("{tmp}/ckpt", False),
    ("{tmp}/s3:/bucket", False),  # a path that only looks like S3
    ("file://{tmp}/ckpt", False),
    ("relative/ckpt", False),
]
JOB = JobIdentity("train", "team-a", "uid-a")


@pytest.mark.parametrize(("spelling", "is_s3"), ROOTS)
def test_operator_trainer_and_store_agree_on_the_root_kind(
    spelling: str, is_s3: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # a relative root lands in the test's directory
    uri = spelling.format(tmp=tmp_path)
    store = open_store(uri)
    store_says_s3 = isinstance(store.backend, S3Backend)
    assert store_says_s3 == is_s3 and isinstance(store.backend, S3Backend | FsBackend)
    operator_delegates = op_storage.delegated(CheckpointSpec(uri=uri))
    trainer_fences = Storage(store, uri, 1, owner_of(JOB)).fences
    assert operator_delegates == trainer_fences == (not store_says_s3), uri


# --- attempt numbering -------------------------------------------------------------------
UIDS = {"x": "uid-x", "x2": "uid-x2", "y": "uid-y", "z": "uid-z"}


def job(key: str) -> JobIdentity:
    # "x2" is job "x" deleted and re-created: same namespace/name, a new UID.
    return JobIdentity(key.rstrip("2"), "team-a", UIDS[key])


def operator_launch(store: CheckpointStore, uri: str, current: dict[str, int], key: str) -> int:
    """What the operator does for an S3 root: number the launch from its job status'
    attempt and the store's selection, then write the fence record."""
    attempt = op_attempts.next_attempt(current.get(key, 0), store.next_attempt())
    store.record_attempt(attempt, None, -1, job=job(key))
    current[key] = attempt
    return attempt


def trainer_launch(store: CheckpointStore, uri: str, current: dict[str, int], key: str) -> int:
    """What happens for a filesystem root: the operator counts the job object's attempts
    (its selection is delegated: no root number), every rank numbers the attempt from
    the fence log, rank 0 records it, and a rank that reads after that agrees."""
    asked = op_attempts.next_attempt(current.get(key, 0), 0)
    current[key] = asked
    ranks = [Storage(store, uri, asked, owner_of(job(key))) for _ in range(2)]
    assert all(r.fences for r in ranks)
    ranks[0].record_start(None, -1)
    late = Storage(store, uri, asked, owner_of(job(key)))
    assert ranks[1].attempt == late.attempt == ranks[0].attempt, "ranks disagree"
    assert ranks[0].attempt is not None
    return ranks[0].attempt


# A history: launches in order; "-y" deletes job y's checkpoints and fence lines
# (`lazarus-ckpt`/deleteOnJobDelete's delete_job_checkpoints).
HISTORIES = {
    "one job": ["x", "x", "x"],
    "two jobs take turns": ["x", "y", "x", "y", "x", "y", "x"],
    "three jobs": ["x", "y", "z", "x", "x", "z", "y", "x"],
    "re-created job continues": ["x", "x", "x", "x2", "x2"],
    "another job's lines deleted": ["y", "y", "y", "x", "-y", "x", "x"],
    "a job starts after many others": ["y"] * 6 + ["z"] * 4 + ["x", "y", "x"],
}


def run(history: list[str], root: Path, launch: Callable[..., int]) -> list[int]:
    store = open_store(str(root))
    current: dict[str, int] = {}
    out = []
    for step in history:
        if step.startswith("-"):
            delete_job_checkpoints(store, Owner("team-a", step[1:], UIDS[step[1:]]))
            continue
        out.append(launch(store, str(root), current, step))
    return out


@pytest.mark.parametrize("history", list(HISTORIES.values()), ids=list(HISTORIES))
def test_operator_and_trainer_number_attempts_alike(history: list[str], tmp_path: Path) -> None:
    by_operator = run(history, tmp_path / "s3-like", operator_launch)
    by_trainer = run(history, tmp_path / "filesystem", trainer_launch)
    assert by_operator == by_trainer
    # The rule's promises, on what both computed: unique per root (a deleted job's
    # numbers are not reused: its pods may still run), increasing per job.
    launches = [k for k in history if not k.startswith("-")]
    assert len(set(by_trainer)) == len(by_trainer)
    for name in {k.rstrip("2") for k in launches}:
        mine = [n for k, n in zip(launches, by_trainer, strict=True) if k.rstrip("2") == name]
        assert mine == sorted(mine), f"{name}'s attempts go back: {mine}"
