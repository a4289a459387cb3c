"""valid_in_lineage: the one rule by which the operator chooses a resume point and the
trainer falls back to older checkpoints (both backends)."""

from __future__ import annotations

from pathlib import Path

import pytest

from lazarus_contract import checkpoint_name
from lazarus_store import CheckpointStore, JobIdentity, Owner, open_store

from .conftest import Raw

A = {"name": "train", "namespace": "team-a", "uid": "uid-a"}
B = JobIdentity("train", "team-b", "uid-b")
OWNER_A = Owner("team-a", "train", "uid-a")


def save(store: CheckpointStore, step: int, attempt: int, job: dict[str, str] = A) -> str:
    w = store.begin(step=step, attempt=attempt)
    w.put_bytes("state.bin", f"{step}".encode())
    return w.commit(reason="periodic", job=job).name


def test_every_valid_checkpoint_newest_first_with_why_the_rest_lost(
    store: CheckpointStore, raw: Raw
) -> None:
    ident = JobIdentity(A["name"], A["namespace"], A["uid"])
    store.record_attempt(1, None, -1, job=ident)
    oldest, older = save(store, 1, 1), save(store, 2, 1)
    dead = save(store, 3, 1)  # attempt 2 resumes from step 2: a dead branch
    store.record_attempt(2, older, 2, job=ident)
    store.record_attempt(3, None, -1, job=B)
    foreign = save(store, 9, 3, {"name": B.name, "namespace": B.namespace, "uid": B.uid})
    broken, newest = save(store, 4, 2), save(store, 5, 2)
    raw.delete(f"{broken}/state.bin")
    quarantined = save(store, 6, 2)
    store.quarantine(quarantined, "bad loss")
    w = store.begin(step=7, attempt=2)
    w.put_bytes("state.bin", b"never committed")

    every = store.valid_in_lineage(2, owner=OWNER_A, limit=None)
    assert [c.name for c in every.valid] == [newest, older, oldest]
    why = {s.name: s.reason for s in every.skipped}
    assert set(why) == {foreign, checkpoint_name(7, 2), quarantined, broken, dead}
    assert "owned by job team-b/train" in why[foreign]
    assert "uncommitted" in why[checkpoint_name(7, 2)]
    assert "quarantined: bad loss" in why[quarantined]
    assert "missing object state.bin" in why[broken]
    assert "dead branch" in why[dead]

    first = store.valid_in_lineage(2, owner=OWNER_A)
    assert first.chosen is not None and first.chosen.name == newest
    assert [c.name for c in first.valid] == [newest]
    assert {s.name for s in first.skipped} == {foreign, checkpoint_name(7, 2), quarantined}
    assert store.latest_valid(2, owner=OWNER_A) == first


@pytest.mark.unit
def test_nothing_valid_is_an_empty_selection(tmp_path: Path) -> None:
    store = open_store(str(tmp_path))
    sel = store.valid_in_lineage(limit=None)
    assert sel.chosen is None and sel.valid == () and sel.skipped == []
