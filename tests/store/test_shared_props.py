"""Shared chunks under random interleavings of saves, retention passes, crashes and
quarantine, against the real S3 server (issue 27): no committed checkpoint ever misses
a byte, and after a quiet pass no unreachable chunk is left. A foreign pass (another
process's `lazarus-ckpt prune --apply`) runs in two steps, its mark and its deletes, so
that saves interleave between them."""

from __future__ import annotations

import itertools
import time
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from lazarus_store import CheckpointStore, JobIdentity, Owner, RetentionPolicy, sweep
from lazarus_store import shared as sh
from lazarus_store.checksum import crc32c
from lazarus_store.chunked import Piece
from lazarus_store.prune import delete_prefix
from lazarus_store.writer import CheckpointWriter

from .conftest import S3_PART

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(600)]

JOB = JobIdentity("j", "ns", "uid-j")
OTHER = JobIdentity("k", "ns", "uid-k")
OWNER = Owner("ns", "j", "uid-j")
OBJ = "trainer/common.safetensors"
PIECE = 64
_PREFIXES = itertools.count()

# Steps: begin a save (which pieces change), write it, commit it, crash it, run
# retention (keep_latest), quarantine the newest committed one, drop a committed one
# without collecting (a prune killed between its deletes and its pass), a foreign
# pass's mark and its deletes.
step = st.one_of(
    st.tuples(st.just("begin"), st.lists(st.booleans(), min_size=3, max_size=3)),
    st.tuples(st.just("write"), st.integers(0, 1)),
    st.tuples(st.just("commit"), st.integers(0, 1)),
    st.tuples(st.just("crash"), st.integers(0, 1)),
    st.tuples(st.just("retain"), st.integers(1, 3)),
    st.tuples(st.just("quarantine"), st.just(0)),
    st.tuples(st.just("drop"), st.just(0)),
    st.tuples(st.just("fmark"), st.just(0)),
    st.tuples(st.just("fsweep"), st.just(0)),
)


class World:
    def __init__(self, store: CheckpointStore) -> None:
        self.store = store
        self.step = 0
        self.content = [bytes([i]) * PIECE for i in range(3)]  # the "frozen" pieces
        self.inflight: list[tuple[CheckpointWriter, bytes]] = []
        self.expected: dict[str, bytes] = {}  # committed checkpoint -> its bytes
        self.last: str | None = None
        self.passes: list[sweep.Pass] = []  # foreign passes marked, not yet swept
        store.record_attempt(1, None, -1, job=JOB)

    def begin(self, change: list[bool]) -> None:
        self.step += 1
        for i, c in enumerate(change):
            if c:
                self.content[i] = bytes([(self.content[i][0] + 3 + i) % 256]) * PIECE
        reuse = (self.last,) if self.last else ()
        w = self.store.begin(step=self.step, attempt=1, uid=JOB.uid, reuse_from=reuse)
        self.inflight.append((w, b"".join(self.content)))

    def write(self, i: int) -> None:
        if i < len(self.inflight):
            w, data = self.inflight[i]
            if not w.entries():
                w.put_chunks(OBJ, data, [Piece(o, PIECE) for o in range(0, len(data), PIECE)])

    def commit(self, i: int) -> None:
        if i < len(self.inflight):
            w, data = self.inflight.pop(i)
            if w.entries():
                self.expected[w.commit(job=JOB).name] = data
                self.last = max(self.expected)

    def crash(self, i: int) -> None:
        if i < len(self.inflight):
            self.inflight.pop(i)  # its prefix and intent stay behind, as after a SIGKILL

    def retain(self, keep: int, now: float | None = None) -> None:
        policy = RetentionPolicy(keep_latest=keep, gc_age_s=3600)
        self.store.prune(policy, dry_run=False, owner=OWNER, now=now)

    def quarantine(self, _: int) -> None:
        if self.last:
            self.store.quarantine(self.last, "test")

    def drop(self, _: int) -> None:
        if self.expected:
            name = min(self.expected)
            self.expected.pop(name)
            keys = [o.key for o in self.store.backend.list_objects(f"{name}/")]
            delete_prefix(self.store.root, name, keys)

    def fmark(self, _: int) -> None:
        self.passes.append(sweep.Pass(self.store.root, self.store.scope(None, OWNER)).mark())

    def fsweep(self, _: int) -> None:
        if self.passes:
            self.passes.pop(0).sweep()

    def check_committed(self) -> None:
        """Every committed checkpoint still listed has every byte of its data."""
        for c in self.store.list_checkpoints():
            if c.committed and c.name in self.expected:
                assert self.store.validate(c.name, info=c).ok, c.name
                assert self.store.read_bytes(c.name, OBJ) == self.expected[c.name]


B = ("begin", [False, False, False])
C = ("begin", [True, True, True])


@example(steps=[C, ("write", 0), ("retain", 1), ("commit", 0)])  # a save in flight
@example(  # a save reuses chunks of a checkpoint retention deletes before it commits
    steps=[
        *(C, ("write", 0), ("commit", 0), B, C, ("write", 1), ("commit", 1)),
        *(("write", 0), ("retain", 1), ("commit", 0)),
    ]
)
@example(  # a foreign pass marks before a save's intent and deletes after its LIST
    steps=[
        *(C, ("write", 0), ("commit", 0), ("drop", 0), B, ("fmark", 0)),
        *(("write", 0), ("fsweep", 0), ("commit", 0)),
    ]
)
@settings(
    max_examples=30,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(steps=st.lists(step, min_size=4, max_size=14))
def test_interleaved_saves_retention_crashes_and_quarantine(
    s3: Any, bucket: str, monkeypatch: pytest.MonkeyPatch, steps: list[tuple[str, Any]]
) -> None:
    # A short window: a save that sees a pass (never ending between two steps) waits
    # briefly, and the pass's deletes in a later step find their deadline passed.
    monkeypatch.setattr(sh, "WINDOW_S", 1.0)
    store = s3.open_store(f"s3://{bucket}/p{next(_PREFIXES)}", part_size=S3_PART, concurrency=4)
    other = s3.open_store(store.description.split()[0], part_size=S3_PART)  # same root
    # Another job on the same root, with a referenced chunk and a leftover.
    w = other.begin(step=10_000, attempt=99, uid=OTHER.uid)
    w.put_chunks(OBJ, b"k" * PIECE, [Piece(0, PIECE)])
    foreign = w.commit(job=OTHER).name
    other.backend.put(sh.blob_key(OTHER.uid, "2" * 64), b"leftover", crc32c(b"leftover"))
    world = World(store)
    for op, arg in steps:
        getattr(world, op)(arg)
        world.check_committed()
    # Quiet: in-flight saves crash, pending passes end, then one past the safety age.
    world.inflight.clear()
    while world.passes:
        world.fsweep(0)
    world.retain(1, now=time.time() + 7200)
    world.check_committed()
    referenced = {
        sh.blob_key(c.manifest.job.uid, d)
        for c in store.list_checkpoints()
        if c.manifest is not None
        for d in c.manifest.chunk_digests()
    }
    mine = {o.key for o in store.backend.list_objects(sh.prefix(JOB.uid))}
    assert mine == {k for k in referenced if k.startswith(sh.prefix(JOB.uid))}
    theirs = {o.key for o in store.backend.list_objects(sh.prefix(OTHER.uid))}
    assert len(theirs) == 2 and other.read_bytes(foreign, OBJ) == b"k" * PIECE
