"""Content-addressed chunks shared by one job's checkpoints (issue 27): written once,
referenced by later checkpoints, verified wherever first written, collected by
reachability, and never another job's to reference, count or delete."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from lazarus_store import CheckpointStore, JobIdentity, Owner, RetentionPolicy, open_store
from lazarus_store import shared as sh
from lazarus_store.chunked import Piece
from lazarus_store.cleanup import delete_job_checkpoints
from lazarus_store.cli import main as cli
from lazarus_store.errors import ChecksumMismatch

from .conftest import Raw

UID_A, UID_B = "uid-a", "uid-b"
JOB_A = JobIdentity("a", "team", UID_A)
JOB_B = JobIdentity("b", "team", UID_B)
OWNER_A = Owner("team", "a", UID_A)
OBJ = "trainer/common.safetensors"
PIECE = 1000


def pieces_of(data: bytes) -> list[Piece]:
    return [Piece(o, min(PIECE, len(data) - o)) for o in range(0, len(data), PIECE)]


def save(
    store: CheckpointStore,
    step: int,
    data: bytes,
    *,
    job: JobIdentity = JOB_A,
    attempt: int = 1,
    reuse: tuple[str, ...] = (),
) -> tuple[str, int]:
    """Commit one checkpoint holding `data` as chunks; (its name, bytes uploaded)."""
    w = store.begin(step=step, attempt=attempt, uid=job.uid, reuse_from=reuse)
    out = w.put_chunks(OBJ, data, pieces_of(data))
    w.put_bytes("trainer/rank-00000.safetensors", b"rng")
    return w.commit(job=job).name, out.uploaded_bytes


def blobs(raw: Raw, uid: str = UID_A) -> list[str]:
    return [k for k in raw.listing() if k.startswith(sh.prefix(uid))]


def test_unchanged_chunks_are_referenced_not_uploaded_again(
    store: CheckpointStore, raw: Raw
) -> None:
    base = os.urandom(3 * PIECE)
    first, sent = save(store, 1, base + b"x" * 500)
    assert sent == 3500 and len(blobs(raw)) == 4
    second, sent = save(store, 2, base + b"y" * 500, reuse=(first,))
    assert sent == 500 and len(blobs(raw)) == 5  # only the changed piece
    assert store.read_bytes(second, OBJ) == base + b"y" * 500
    assert store.read_bytes(first, OBJ) == base + b"x" * 500
    m = store.read_manifest(second)
    assert m.schema_version == 2 and m.own_bytes == 3 and m.shared_bytes == 3500
    with store.open_read(second, OBJ) as f:  # the streaming reader follows the chunks too
        assert f.read() == base + b"y" * 500
    assert store.validate(second, full=True).ok


def test_a_corrupt_shared_chunk_invalidates_every_checkpoint_that_references_it(
    store: CheckpointStore, raw: Raw
) -> None:
    older, _ = save(store, 1, os.urandom(PIECE))  # shares nothing with the two below
    base = os.urandom(2 * PIECE)
    a, _ = save(store, 2, base)
    b, _ = save(store, 3, base, reuse=(a,))
    key = sh.blob_key(UID_A, store.read_manifest(a).objects[0].chunks[0].sha256)
    good = raw.get(key)
    raw.put(key, bytes([good[0] ^ 1]) + good[1:])  # same size: only full validation sees it
    for name in (a, b):
        assert store.validate(name).ok
        assert not store.validate(name, full=True).ok
        with pytest.raises(ChecksumMismatch, match="shared chunks"):
            store.read_bytes(name, OBJ)
    sel = store.valid_in_lineage(None, full=True, owner=OWNER_A)
    assert sel.chosen is not None and sel.chosen.name == older
    assert {s.name for s in sel.skipped} == {a, b}
    raw.delete(key)  # missing: cheap validation sees it as well
    assert not store.validate(b).ok and "missing shared chunk" in store.validate(b).problems[0]


def test_retention_collects_only_unreachable_chunks(store: CheckpointStore, raw: Raw) -> None:
    names: list[str] = []
    for step in range(1, 5):  # a frozen part (kept), and a part changed every save
        prev = (names[-1],) if names else ()
        names.append(save(store, step, b"F" * PIECE + bytes([step]) * PIECE, reuse=prev)[0])
    assert len(blobs(raw)) == 5
    store.prune(RetentionPolicy(keep_latest=2), dry_run=False, owner=OWNER_A)
    kept = {m.sha256 for n in names[2:] for m in store.read_manifest(n).objects[0].chunks}
    assert {k.rsplit("/", 1)[1] for k in blobs(raw)} == kept and len(kept) == 3


def test_a_save_in_flight_keeps_its_chunks_and_a_crashed_one_loses_them_after_the_safety_age(
    store: CheckpointStore, raw: Raw
) -> None:
    store.record_attempt(1, None, -1, job=JOB_A)  # whose the uncommitted prefix is
    first, _ = save(store, 1, b"a" * PIECE)
    w = store.begin(step=2, attempt=1, uid=UID_A, reuse_from=(first,))
    w.put_chunks(OBJ, b"b" * PIECE, pieces_of(b"b" * PIECE))  # crashes before its commit
    policy = RetentionPolicy(keep_latest=1, gc_age_s=3600)
    store.prune(policy, dry_run=False, owner=OWNER_A)
    assert len(blobs(raw)) == 2  # the intent protects the save's chunk
    store.prune(policy, dry_run=False, owner=OWNER_A, now=time.time() + 7200)
    assert len(blobs(raw)) == 1  # the crashed prefix is garbage, then its chunk


def test_a_zombie_attempt_never_collects(store: CheckpointStore, raw: Raw) -> None:
    save(store, 1, b"a" * PIECE)
    store.record_attempt(1, None, -1, job=JOB_A)
    store.record_attempt(2, None, -1, job=JOB_A)
    raw.put(sh.blob_key(UID_A, "0" * 64), b"orphan")
    assert store.collect_shared(attempt=1, owner=OWNER_A).skipped
    assert len(blobs(raw)) == 2
    assert store.collect_shared(attempt=2, owner=OWNER_A).deleted == [sh.blob_key(UID_A, "0" * 64)]


def test_another_jobs_chunks_are_never_referenced_counted_or_deleted(
    store: CheckpointStore, raw: Raw
) -> None:
    data = b"same bytes in both jobs" * 100
    a, _ = save(store, 1, data)
    b, sent = save(store, 2, data, job=JOB_B, attempt=2, reuse=(a,))
    assert sent == len(data)  # B's own copy: A's checkpoint is not B's to reuse
    assert {sh.blob_key(UID_B, c.sha256) for c in store.read_manifest(b).objects[0].chunks}
    raw.put(sh.blob_key(UID_B, "1" * 64), b"B's unreferenced leftover")
    swept = store.collect_shared(owner=OWNER_A)
    assert swept.deleted == [] and len(blobs(raw, UID_B)) == len(blobs(raw)) + 1
    deleted = delete_job_checkpoints(store, OWNER_A)
    assert deleted.shared_objects == len(pieces_of(data)) and blobs(raw) == []
    assert store.read_bytes(b, OBJ) == data and len(blobs(raw, UID_B)) == len(pieces_of(data)) + 1


def test_the_old_format_and_the_new_load_side_by_side(store: CheckpointStore) -> None:
    w = store.begin(step=1, attempt=1)
    w.put_bytes(OBJ, b"whole object")
    old = w.commit(job=JOB_A).name
    new, _ = save(store, 2, b"chunked object", reuse=(old,))
    assert store.read_manifest(old).schema_version == 1
    assert store.read_bytes(old, OBJ) == b"whole object"
    assert store.read_bytes(new, OBJ) == b"chunked object"


def test_chunks_for_one_job_cannot_commit_under_another(store: CheckpointStore) -> None:
    w = store.begin(step=1, attempt=1, uid=UID_A)
    w.put_chunks(OBJ, b"x" * 10, pieces_of(b"x" * 10))
    with pytest.raises(Exception, match="another job uid"):
        w.commit(job=JOB_B)


@pytest.mark.unit
def test_the_cli_shows_own_and_shared_size(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = open_store(str(tmp_path))
    save(store, 1, b"z" * 3000)
    assert cli(["--uri", str(tmp_path), "list"]) == 0
    header, row = capsys.readouterr().out.splitlines()[:2]
    assert header.split()[3:5] == ["SIZE", "SHARED"]
    assert row.split()[3:7] == ["3", "B", "1000", "B"]  # three equal pieces: one chunk
