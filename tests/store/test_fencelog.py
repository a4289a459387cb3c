"""The fence log is read with a size cap, like manifests and quarantine markers: an
oversized attempts.json is a clear StoreError, never read whole into every operator
cycle and trainer start. Both backends (the S3 one is the real test server)."""

from __future__ import annotations

import json

import pytest

from lazarus_contract import ATTEMPTS_LOG
from lazarus_store import AttemptRecord, CheckpointStore, JobIdentity, Owner, StoreError
from lazarus_store.fencelog import MAX_FENCE_LOG_BYTES
from lazarus_store.lineage import index_attempts
from lazarus_store.ownership import owns_attempt, why_not_owned

from .conftest import Raw

A = JobIdentity("train", "team-a", "uid-a")


def log_of_size(size: int) -> bytes:
    """A well-formed fence log of exactly `size` bytes (one record, padded)."""
    doc = {"attempts": [{"attempt": 1, "resumeFrom": None, "resumeStep": -1}], "pad": ""}
    doc["pad"] = "x" * (size - len(json.dumps(doc).encode()))
    raw = json.dumps(doc).encode()
    assert len(raw) == size
    return raw


def test_an_oversized_fence_log_is_refused(store: CheckpointStore, raw: Raw) -> None:
    w = store.begin(step=1, attempt=1)
    w.put_bytes("state.bin", b"s")
    w.commit(reason="periodic")
    raw.put(ATTEMPTS_LOG, log_of_size(MAX_FENCE_LOG_BYTES + 1))  # only the cap refuses it

    for call in (
        store.attempts,
        store.next_attempt,
        store.latest_valid,
        lambda: store.record_attempt(2, None, -1, job=A),
    ):
        with pytest.raises(StoreError, match=r"fence log is over 4 MiB: not read"):
            call()
    assert len(raw.get(ATTEMPTS_LOG)) == MAX_FENCE_LOG_BYTES + 1, "the log was rewritten"


def test_a_fence_log_at_the_cap_is_read(store: CheckpointStore, raw: Raw) -> None:
    raw.put(ATTEMPTS_LOG, log_of_size(MAX_FENCE_LOG_BYTES))
    assert [r.attempt for r in store.attempts()] == [1]
    assert store.next_attempt() == 2


@pytest.mark.unit
def test_the_attempt_index_answers_as_the_log_does() -> None:
    """Ownership asks per checkpoint; the store passes the log indexed by attempt."""
    b = JobIdentity("train", "team-b", "uid-b")
    old = JobIdentity("train", "team-a", "uid-a0")
    records = [
        AttemptRecord(1, None, -1, "", old),
        AttemptRecord(2, None, -1, "", b),
        AttemptRecord(2, None, -1, "", old),  # a duplicate number: the first one counts
        AttemptRecord(3, None, -1, "", None),
    ]
    index = index_attempts(records)
    owner = Owner("team-a", "train", "uid-a")
    for job in (A, b, old, JobIdentity()):
        for attempt in (1, 2, 3, 4):
            assert why_not_owned(owner, job, attempt, index) == why_not_owned(
                owner, job, attempt, records
            )
            assert owns_attempt(owner, attempt, index) == owns_attempt(owner, attempt, records)
    assert index[2].job == b


def test_a_record_keeps_the_number_its_job_asked_for(store: CheckpointStore, raw: Raw) -> None:
    """`jobAttempt` (a trainer numbering a filesystem root's attempt) is written, read
    back, and left out when not given; a record where it is not a count >= 1 makes the
    log unreadable (one line), like any other malformed field."""
    store.record_attempt(5, None, -1, job=A, job_attempt=2)
    store.record_attempt(6, None, -1, job=A)
    assert [(r.attempt, r.job_attempt) for r in store.attempts()] == [(5, 2), (6, None)]
    assert "jobAttempt" not in json.loads(raw.get(ATTEMPTS_LOG))["attempts"][1]
    for bad in ("2", 0, True, 1.5):
        doc = {
            "attempts": [{"attempt": 1, "resumeFrom": None, "resumeStep": -1, "jobAttempt": bad}]
        }
        raw.put(ATTEMPTS_LOG, json.dumps(doc).encode())
        with pytest.raises(StoreError, match=r"fence log is unreadable \(jobAttempt ") as err:
            store.attempts()
        assert "\n" not in str(err.value)
