"""A collection pass of another process beside a save (issue 27, docs/contract.md
section 7): what the pass deletes while a save that saw its marker waits is uploaded
again before the save returns; a save that commits while a pass marks keeps its chunks."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from lazarus_store import CheckpointStore, JobIdentity, Owner, catalog, chunked, sweep
from lazarus_store import shared as sh
from lazarus_store.chunked import ChunkedResult, Piece
from lazarus_store.prune import delete_prefix

from .conftest import Raw

JOB = JobIdentity("a", "team", "uid-a")
OWNER = Owner("team", "a", "uid-a")
OBJ = "trainer/common.safetensors"
DATA = b"F" * 1000 + b"G" * 1000
PIECES = [Piece(0, 1000), Piece(1000, 1000)]


def garbage_of_a_dropped_checkpoint(store: CheckpointStore) -> None:
    """DATA's chunks stored, referenced by nothing (a prune killed between its prefix
    deletes and its pass): the next pass finds them unreferenced."""
    w = store.begin(step=1, attempt=1, uid=JOB.uid)
    w.put_chunks(OBJ, DATA, PIECES)
    name = w.commit(job=JOB).name
    delete_prefix(store.root, name, [o.key for o in store.backend.list_objects(f"{name}/")])


def test_what_a_pass_deletes_while_a_save_waits_for_it_is_uploaded_again(
    store: CheckpointStore, raw: Raw, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.record_attempt(1, None, -1, job=JOB)
    garbage_of_a_dropped_checkpoint(store)
    foreign = sweep.Pass(store.root, store.scope(None, OWNER)).mark()  # before the intent
    assert len(foreign.out.deleted) == 2
    waiting = threading.Event()
    settle: Callable[..., int] = chunked._settle

    def signalled(*a: Any) -> int:
        waiting.set()  # the save has listed (and seen the marker) and uploaded
        return settle(*a)

    monkeypatch.setattr(chunked, "_settle", signalled)
    w = store.begin(step=2, attempt=1, uid=JOB.uid)
    got: list[ChunkedResult] = []
    saver = threading.Thread(target=lambda: got.append(w.put_chunks(OBJ, DATA, PIECES)))
    saver.start()
    assert waiting.wait(60)
    assert foreign.sweep().deleted == foreign.out.deleted  # within its deadline: deleted
    saver.join(60)
    assert got and got[0].resent_bytes == len(DATA)
    name = w.commit(job=JOB).name
    assert store.validate(name, full=True).ok
    assert store.read_bytes(name, OBJ) == DATA
    assert not [k for k in raw.listing() if sh.SWEEP_MARK in k]  # the pass's marker went


def test_a_save_committing_while_a_pass_marks_keeps_its_chunks(store: CheckpointStore) -> None:
    """The pass LISTs the save uncommitted with its intent; the save commits and deletes
    the intent before the pass reads it: the pass reads the manifest instead."""
    store.record_attempt(1, None, -1, job=JOB)
    w = store.begin(step=1, attempt=1, uid=JOB.uid)
    w.put_chunks(OBJ, DATA, PIECES)
    listed = catalog.list_checkpoints(store.root)
    m = w.commit(job=JOB)
    assert sweep.marked(store.root, listed) == {JOB.uid: m.chunk_digests()}


def test_a_pass_past_its_deadline_deletes_nothing(
    store: CheckpointStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.record_attempt(1, None, -1, job=JOB)
    garbage_of_a_dropped_checkpoint(store)
    foreign = sweep.Pass(store.root, store.scope(None, OWNER)).mark()
    monkeypatch.setattr(sh, "WINDOW_S", 0.0)  # as if it stalled past its deadline
    out = foreign.sweep()
    assert out.deleted == [] and out.skipped
    assert len(store.backend.list_objects(sh.prefix(JOB.uid))) == 2  # chunks, no marker


def test_a_dead_passs_marker_is_ignored_by_saves_and_removed_by_the_next_pass(
    store: CheckpointStore, raw: Raw, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A pass killed between its marker and its end leaves the marker: once WINDOW_S
    old by the server's clock it stops no save, and the next pass that deletes removes it."""
    store.record_attempt(1, None, -1, job=JOB)
    garbage_of_a_dropped_checkpoint(store)
    dead = sh.sweep_key(JOB.uid, "killed")
    raw.put(dead, b"")
    monkeypatch.setattr(sh, "WINDOW_S", 1.0)
    time.sleep(2.5)  # the marker ages past the window (S3 times are whole seconds)
    seen: list[set[str]] = []
    settle: Callable[..., int] = chunked._settle

    def recorded(root: Any, uid: str, passes: set[str], *a: Any) -> int:
        seen.append(passes)
        return settle(root, uid, passes, *a)

    monkeypatch.setattr(chunked, "_settle", recorded)
    w = store.begin(step=2, attempt=1, uid=JOB.uid)
    w.put_chunks(OBJ, DATA, PIECES)
    assert seen == [set()]  # nothing to wait for
    w.commit(job=JOB)
    raw.put(sh.blob_key(JOB.uid, "0" * 64), b"orphan")  # for the next pass to delete
    assert store.collect_shared(owner=OWNER).deleted == [sh.blob_key(JOB.uid, "0" * 64)]
    assert dead not in raw.listing()
