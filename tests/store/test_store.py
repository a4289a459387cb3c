"""The store against both backends: round trips, every kind of bad input, conflicts,
quarantine, fencing and pruning. Same tests, parametrized (see conftest.py)."""

from __future__ import annotations

import json
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from lazarus_contract import checkpoint_name
from lazarus_store import (
    CheckpointNotFound,
    CheckpointStore,
    CheckpointWriter,
    ChecksumMismatch,
    CommitConflict,
    FencedOut,
    InvalidCheckpoint,
    Manifest,
    Owner,
    RetentionPolicy,
)
from lazarus_store.verified import ReadStats

from .conftest import Raw

FILES = {"model.bin": b"m" * 3000 + b"end", "optim/state.bin": os.urandom(1500), "meta.json": b"{}"}


def save(
    store: CheckpointStore,
    step: int,
    attempt: int = 1,
    files: dict[str, bytes] | None = None,
    **kw: object,
) -> Manifest:
    w = store.begin(step=step, attempt=attempt)
    for path, data in (files or FILES).items():
        w.put_bytes(path, data)
    return w.commit(**{"reason": "periodic", "epoch": 0, **kw})  # type: ignore[arg-type]


def test_round_trip_small_objects(store: CheckpointStore) -> None:
    m = save(
        store,
        10,
        2,
        metrics={"loss": 0.5},
        world_size=4,
        parent=None,
        job={"name": "j", "namespace": "ns", "uid": "u1"},
        samples_seen=640,
        tokens_seen=9000,
        torch_version="2.5.0",
        extra={"seed": 1},
    )
    name = checkpoint_name(10, 2)
    assert m.name == name and m.total_bytes == sum(len(b) for b in FILES.values())
    got = store.read_manifest(name)
    assert got == m
    assert got.job.uid == "u1" and got.tokens_seen == 9000 and got.reason == "periodic"
    for path, data in FILES.items():
        assert store.read_bytes(name, path) == data
        with store.open_read(name, path) as f:
            assert f.read() == data
    assert store.validate(name, full=True).ok
    [info] = store.list_checkpoints()
    assert info.committed and info.manifest == m and not info.quarantined


def test_multipart_put_bytes_stream_and_file(store: CheckpointStore, tmp_path: Path) -> None:
    big = os.urandom(store.part_size * 2 + 12345)  # three parts
    w = store.begin(step=1, attempt=1)
    e1 = w.put_bytes("big.bin", memoryview(big))
    with w.open_write("stream.bin") as f:
        for i in range(0, len(big), 100_000):
            f.write(big[i : i + 100_000])
    local = tmp_path / "local.bin"
    local.write_bytes(big)
    e3 = w.put_file("file.bin", local)
    m = w.commit(reason="final")
    crcs = {o.path: o.crc32c for o in m.objects}
    assert crcs["big.bin"] == crcs["stream.bin"] == crcs["file.bin"] == e1.crc32c == e3.crc32c
    name = m.name
    assert store.read_bytes(name, "stream.bin") == big
    out = tmp_path / "out.bin"
    store.download_file(name, "file.bin", out)
    assert out.read_bytes() == big
    with store.open_read(name, "big.bin") as f:
        assert f.read() == big
    assert store.validate(name, full=True).ok


def test_put_bytes_sends_the_callers_buffer_on_its_pool(
    store: CheckpointStore, tmp_path: Path
) -> None:
    """A view into a larger buffer is written as it is, on the caller's bounded pool (the
    trainer's save threads), and read back into a bytearray in place (read_buffer)."""
    backing = bytearray(os.urandom(store.part_size * 3 + 777))
    view = memoryview(backing)[100 : 100 + store.part_size * 2 + 5]  # a slice, not a copy
    used: set[str] = set()

    class Counting(ThreadPoolExecutor):
        def submit(self, fn, /, *args, **kwargs):  # type: ignore[no-untyped-def]
            def run():  # type: ignore[no-untyped-def]
                used.add(threading.current_thread().name)
                return fn(*args, **kwargs)

            return super().submit(run)

    with Counting(1, thread_name_prefix="caller-pool") as pool:
        w = store.begin(step=1, attempt=1)
        big = w.put_bytes("big.bin", view, pool=pool, concurrency=1)
        small = w.put_bytes("small.bin", memoryview(backing)[:10], pool=pool)
        m = w.commit(reason="final")
    assert used == {"caller-pool_0"}, "the parts did not go through the caller's pool"
    expected = bytes(view)
    assert big.size == len(expected) and small.size == 10
    got = store.read_buffer(m.name, "big.bin")
    assert isinstance(got, bytearray) and got == expected
    assert store.read_bytes(m.name, "small.bin") == bytes(backing[:10])
    assert store.validate(m.name, full=True).ok
    out = tmp_path / "out.bin"
    store.download_file(m.name, "big.bin", out)
    assert out.read_bytes() == expected


def test_read_buffer_stats_count_the_bytes_and_time_each_ranges_crc(
    store: CheckpointStore,
) -> None:
    """The trainer's resume timing: bytes read and one CRC32C time per range, summed."""
    data = os.urandom(store.part_size * 2 + 99)  # three ranges
    m = save(store, 3, files={"x.bin": data, "small.bin": b"abc"})
    stats = ReadStats()
    assert store.read_buffer(m.name, "x.bin", stats=stats) == data
    assert store.read_buffer(m.name, "small.bin", stats=stats) == b"abc"
    assert stats.bytes == len(data) + 3
    assert len(stats.crc_seconds) == 4 and all(t >= 0 for t in stats.crc_seconds)
    assert stats.verify_seconds == pytest.approx(sum(stats.crc_seconds))


def test_read_buffer_checks_every_byte(store: CheckpointStore, raw: Raw) -> None:
    data = os.urandom(store.part_size + 99)
    m = save(store, 3, files={"x.bin": data, "empty.bin": b""})
    assert store.read_buffer(m.name, "empty.bin") == bytearray()
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 1
    raw.put(f"{m.name}/x.bin", bytes(flipped))
    with pytest.raises(ChecksumMismatch):
        store.read_buffer(m.name, "x.bin")
    raw.delete(f"{m.name}/empty.bin")
    with pytest.raises(CheckpointNotFound):
        store.read_buffer(m.name, "empty.bin")


def test_checkpoints_listed_newest_first_with_uncommitted(store: CheckpointStore) -> None:
    save(store, 5)
    save(store, 20, 2)
    w = store.begin(step=30, attempt=2)
    w.put_bytes("model.bin", b"partial")
    names = [(c.name, c.committed) for c in store.list_checkpoints()]
    assert names == [
        (checkpoint_name(30, 2), False),
        (checkpoint_name(20, 2), True),
        (checkpoint_name(5, 1), True),
    ]
    sel = store.latest_valid()
    assert sel.chosen is not None and sel.chosen.name == checkpoint_name(20, 2)
    assert [s.name for s in sel.skipped] == [checkpoint_name(30, 2)]
    assert "uncommitted" in sel.skipped[0].reason


# --- bad input: each case is skipped with a reason and the older checkpoint is chosen ---------
def _corrupt(raw: Raw, name: str, how: str) -> None:
    if how == "truncated":
        raw.put(f"{name}/model.bin", raw.get(f"{name}/model.bin")[:-10])
    elif how == "missing":
        raw.delete(f"{name}/optim/state.bin")
    elif how == "wrong size":
        raw.put(f"{name}/meta.json", b"{}   ")
    elif how == "not json":
        raw.put(f"{name}/manifest.json", b"{not json")
    elif how == "unknown schema":
        doc = json.loads(raw.get(f"{name}/manifest.json"))
        doc["schemaVersion"] = 99
        raw.put(f"{name}/manifest.json", json.dumps(doc).encode())
    elif how == "path outside prefix":
        doc = json.loads(raw.get(f"{name}/manifest.json"))
        doc["objects"][0]["path"] = "../step-000000000001-a0001/model.bin"
        raw.put(f"{name}/manifest.json", json.dumps(doc).encode())
    elif how == "schema violation":
        doc = json.loads(raw.get(f"{name}/manifest.json"))
        del doc["objects"][0]["crc32c"]
        raw.put(f"{name}/manifest.json", json.dumps(doc).encode())
    elif how == "no manifest":
        raw.delete(f"{name}/manifest.json")
    else:
        raise AssertionError(how)


BAD = {
    "truncated": "model.bin is 2993 bytes, manifest says 3003",
    "missing": "missing object optim/state.bin",
    "wrong size": "meta.json is 5 bytes, manifest says 2",
    "not json": "manifest is not JSON",
    "unknown schema": "unknown manifest schema version 99",
    "path outside prefix": "'..' segment",
    "schema violation": "'crc32c' is a required property",
    "no manifest": "uncommitted",
}


@pytest.mark.parametrize("how", list(BAD))
def test_bad_checkpoint_is_skipped_with_reason(store: CheckpointStore, raw: Raw, how: str) -> None:
    save(store, 1)
    bad = save(store, 2).name
    _corrupt(raw, bad, how)
    sel = store.latest_valid()
    assert sel.chosen is not None and sel.chosen.name == checkpoint_name(1, 1)
    [skipped] = sel.skipped
    assert skipped.name == bad and BAD[how] in skipped.reason, skipped.reason
    v = store.validate(bad)
    assert not v.ok and BAD[how] in "; ".join(v.problems)
    # Retention never deletes its way into the bad one: the good one stays.
    plan = store.prune(RetentionPolicy(keep_latest=1, gc_age_s=0), dry_run=False)
    assert checkpoint_name(1, 1) in plan.keep
    assert store.latest_valid().chosen is not None


def test_manifest_errors_raise_clear_errors(store: CheckpointStore, raw: Raw) -> None:
    name = save(store, 3).name
    _corrupt(raw, name, "not json")
    with pytest.raises(InvalidCheckpoint, match=f"{name}/manifest.json: manifest is not JSON"):
        store.read_manifest(name)
    with pytest.raises(CheckpointNotFound, match="no such checkpoint"):
        store.validate(checkpoint_name(99, 1))
    with pytest.raises(CheckpointNotFound, match="not a checkpoint name"):
        store.read_manifest("../etc")


def test_extra_unlisted_object_is_reported_not_invalidating(
    store: CheckpointStore, raw: Raw
) -> None:
    name = save(store, 4).name
    raw.put(f"{name}/stray.bin", b"junk")
    v = store.validate(name, full=True)
    assert v.ok and v.warnings == ["unlisted object stray.bin (garbage, never read)"]
    with pytest.raises(CheckpointNotFound, match="not listed in the manifest"):
        store.read_bytes(name, "stray.bin")
    assert store.latest_valid().chosen is not None


def test_flipped_byte_caught_by_full_validation_and_reads(store: CheckpointStore, raw: Raw) -> None:
    save(store, 1)
    name = save(store, 2).name
    data = bytearray(raw.get(f"{name}/model.bin"))
    data[100] ^= 0x01
    raw.put(f"{name}/model.bin", bytes(data))
    assert store.validate(name).ok  # same size: cheap validation cannot tell
    full = store.validate(name, full=True)
    assert not full.ok and "model.bin: CRC32C" in full.problems[0]
    with pytest.raises(ChecksumMismatch, match=r"model\.bin"):
        store.read_bytes(name, "model.bin")
    with pytest.raises(ChecksumMismatch), store.open_read(name, "model.bin") as f:
        f.read()
    assert store.latest_valid().chosen.name == name  # type: ignore[union-attr]
    sel = store.latest_valid(full=True)
    assert sel.chosen is not None and sel.chosen.name == checkpoint_name(1, 1)
    assert "CRC32C" in sel.skipped[0].reason


def test_quarantine_is_never_chosen_and_never_deleted(store: CheckpointStore) -> None:
    save(store, 1)
    name = save(store, 2).name
    store.quarantine(name, "NaN loss after resume")
    assert store.is_quarantined(name)
    assert not store.is_quarantined(checkpoint_name(1, 1))
    sel = store.latest_valid()
    assert sel.chosen.name == checkpoint_name(1, 1)  # type: ignore[union-attr]
    assert sel.skipped[0].reason == "quarantined: NaN loss after resume"
    [info] = [c for c in store.list_checkpoints() if c.name == name]
    assert info.quarantined and info.quarantine_reason == "NaN loss after resume"
    save(store, 3)
    save(store, 4)
    store.prune(RetentionPolicy(keep_latest=1, gc_age_s=0), dry_run=False)
    assert {c.name for c in store.list_checkpoints()} == {name, checkpoint_name(4, 1)}


def test_concurrent_commits_exactly_one_wins(store: CheckpointStore) -> None:
    for step in range(3):
        writers = [store.begin(step=step, attempt=1) for _ in range(4)]
        for i, w in enumerate(writers):
            w.put_bytes("model.bin", b"same bytes")
            w.put_bytes(f"rank{i}.bin", b"x")
        barrier = threading.Barrier(len(writers))
        results: list[str] = []

        def commit(
            w: CheckpointWriter, barrier: threading.Barrier = barrier, results: list[str] = results
        ) -> None:
            barrier.wait()
            try:
                w.commit(reason="periodic")
                results.append("won")
            except CommitConflict:
                results.append("lost")

        threads = [threading.Thread(target=commit, args=(w,)) for w in writers]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(results) == ["lost", "lost", "lost", "won"]
    with pytest.raises(CommitConflict, match="already committed"):
        store.begin(step=0, attempt=1)


def test_fencing_and_lineage(store: CheckpointStore, raw: Raw) -> None:
    assert store.attempts() == []
    store.record_attempt(1, None, -1)
    save(store, 100, 1)
    save(store, 200, 1)
    store.record_attempt(2, checkpoint_name(200, 1), 200)
    assert [(a.attempt, a.resume_step) for a in store.attempts()] == [(1, -1), (2, 200)]
    # A zombie of attempt 1 cannot commit any more ...
    w = store.begin(step=300, attempt=1)
    w.put_bytes("model.bin", b"zombie")
    with pytest.raises(FencedOut, match="attempt 2 has started"):
        w.commit()
    # ... and a commit that raced the fence (it read the log just before attempt 2 was
    # appended) is a dead branch: attempt 2 resumed from step 200.
    log = raw.get("_lazarus/attempts.json")
    raw.put("_lazarus/attempts.json", b'{"attempts": [{"attempt": 1, "resumeStep": -1}]}')
    save(store, 300, 1)
    raw.put("_lazarus/attempts.json", log)
    save(store, 250, 2)
    save(store, 300, 2)
    sel = store.latest_valid(attempt=2)
    assert sel.chosen.name == checkpoint_name(300, 2)  # type: ignore[union-attr]
    store.record_attempt(3, checkpoint_name(250, 2), 250)
    sel = store.latest_valid()  # attempt 4 would resume: lineage of the newest in the log
    assert sel.chosen is not None and sel.chosen.name == checkpoint_name(250, 2)
    reasons = {s.name: s.reason for s in sel.skipped}
    assert "dead branch" in reasons[checkpoint_name(300, 2)]
    assert "dead branch" in reasons[checkpoint_name(300, 1)]


def test_prune_keeps_latest_best_and_resume_target(store: CheckpointStore) -> None:
    losses = {1: 0.9, 2: 0.2, 3: 0.7, 4: 0.6, 5: 0.8, 6: 0.5}
    for step, loss in losses.items():
        save(store, step, metrics={"loss": loss})
    stale = store.begin(step=7, attempt=1)
    stale.put_bytes("model.bin", b"left by a crash")
    policy = RetentionPolicy(keep_latest=2, keep_best=1, metric="loss", mode="min", gc_age_s=3600)
    dry = store.prune(policy, checkpoint_name(3, 1))
    assert len(store.list_checkpoints()) == 7  # dry run deletes nothing
    assert set(dry.delete) == {checkpoint_name(1, 1), checkpoint_name(4, 1)}
    assert dry.garbage == ()  # the uncommitted one is young: maybe a save in progress
    plan = store.prune(policy, checkpoint_name(3, 1), dry_run=False, now=time.time() + 7200)
    assert plan.garbage == (checkpoint_name(7, 1),)
    left = [c.name for c in store.list_checkpoints()]
    assert left == [checkpoint_name(s, 1) for s in (6, 5, 3, 2)]
    assert "best loss" in plan.keep[checkpoint_name(2, 1)]
    assert "resume target" in plan.keep[checkpoint_name(3, 1)]


def test_abort_removes_written_objects(store: CheckpointStore, raw: Raw) -> None:
    w = store.begin(step=9, attempt=1)
    w.put_bytes("a.bin", b"a")
    with pytest.raises(RuntimeError), w.open_write("b.bin") as f:
        f.write(b"b" * 10)
        raise RuntimeError("save failed")
    w.abort()
    assert raw.listing() == []
    assert store.list_checkpoints() == []


def test_many_objects_deleted_in_batches(store: CheckpointStore, raw: Raw) -> None:
    name = save(store, 1).name
    save(store, 2)
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda i: raw.put(f"{name}/shards/{i:05d}", b""), range(1100)))
    store.prune(RetentionPolicy(keep_latest=1, gc_age_s=0), dry_run=False)
    assert [k for k in raw.listing() if k.startswith(name)] == []
    assert [c.name for c in store.list_checkpoints()] == [checkpoint_name(2, 1)]


def test_writer_refuses_paths_outside_prefix(store: CheckpointStore) -> None:
    w = store.begin(step=1, attempt=1)
    for bad in ("../x", "/abs", "a//b", "manifest.json", "a/./b", ""):
        with pytest.raises(ValueError):
            w.put_bytes(bad, b"x")


def test_concurrent_record_attempt_loses_no_update(store: CheckpointStore) -> None:
    threads = [
        threading.Thread(target=store.record_attempt, args=(n, None, -1)) for n in range(1, 7)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [a.attempt for a in store.attempts()] == [1, 2, 3, 4, 5, 6]


def test_foreign_job_is_skipped(store: CheckpointStore) -> None:
    save(store, 1, job={"name": "j", "namespace": "ns", "uid": "mine"})
    save(store, 2, job={"name": "j", "namespace": "ns", "uid": "other"})
    sel = store.latest_valid(owner=Owner("ns", "j", "mine"))
    assert sel.chosen is not None and sel.chosen.name == checkpoint_name(1, 1)
    assert "job uid 'other'" in sel.skipped[0].reason
