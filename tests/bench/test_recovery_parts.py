"""bench/recovery.py's pure parts: the trainer's lines read back, one recovery split into
parts that add up to its total, and the percentiles."""

from __future__ import annotations

import json
import logging
from datetime import datetime

import pytest

from bench.recovery_parts import (
    PARTS,
    READY_MARK,
    TERMINATION_MARK,
    ResumeRecord,
    Stamps,
    asctime_epoch,
    marked_time,
    percentile,
    resume_record,
    split,
    summarize,
)
from lazarus_trainer.resume_timing import PREFIX, ResumeTiming

pytestmark = pytest.mark.unit


def test_an_asctime_line_is_read_as_local_time_to_the_millisecond() -> None:
    want = datetime(2026, 12, 2, 4, 18, 43, 252000).timestamp()
    line = "2026-12-02 04:18:43,252 INFO lazarus.train: lazarus-train ready (pid 1): imports done"
    assert asctime_epoch(line) == pytest.approx(want)
    assert asctime_epoch("[2026-12-02 04:18:46,822] [WARNING] deepspeed says") is None


def test_asctime_matches_what_logging_writes() -> None:
    """The trainer's lines come from logging's default format: read one it formatted."""
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    record = logging.LogRecord("lazarus.train", logging.INFO, "", 0, READY_MARK, None, None)
    record.created, record.msecs = 1_796_185_123.456, 456.0
    assert asctime_epoch(fmt.format(record)) == pytest.approx(1_796_185_123.456, abs=1e-6)


def test_marked_time_is_the_first_line_holding_the_mark() -> None:
    log = [
        "2026-12-02 04:18:46,551 INFO botocore.credentials: Found credentials",
        "2026-12-02 04:18:49,403 INFO lazarus_trainer.termination: termination: {}",
        "2026-12-02 04:18:50,000 INFO lazarus_trainer.termination: termination: {}",
    ]
    assert marked_time(log, TERMINATION_MARK) == asctime_epoch(log[1])
    assert marked_time(log, READY_MARK) is None


def test_the_trainers_resume_timing_line_reads_back() -> None:
    timing = ResumeTiming(started=100.0)
    timing.seconds.update(lookup=0.1, fetch=1.5, decode=0.01, restore=0.2)
    timing.reads.bytes = 257 << 20
    timing.reads.crc_seconds += [0.02, 0.03]
    timing.checkpoint = "step-000000000010-a0001"
    line = f"2026-12-02 04:19:12,264 INFO lazarus: {timing.line()}"
    got = resume_record(["2026-12-02 04:19:12,259 INFO lazarus: resumed from x", line])
    assert got is not None and got.checkpoint == "step-000000000010-a0001"
    assert got.started == 100.0 and got.ended > 100.0
    assert got.ended == pytest.approx(timing.ended, abs=1e-5)  # microseconds in the line
    assert got.bytes == 257 << 20
    assert got.seconds == pytest.approx(
        {"lookup": 0.1, "fetch": 1.5, "decode": 0.01, "restore": 0.2, "verify": 0.05}
    )
    assert json.loads(timing.line()[len(PREFIX) :])["checkpoint"] == timing.checkpoint
    assert resume_record(["no timing here"]) is None


def test_a_timing_part_adds_up_and_survives_a_raise() -> None:
    timing = ResumeTiming()
    with timing.part("fetch"):
        pass
    with pytest.raises(RuntimeError), timing.part("fetch"):
        raise RuntimeError("a bad checkpoint")
    assert set(timing.seconds) == {"fetch"} and timing.seconds["fetch"] >= 0


def stamps(disrupted: float, observed: float, exited: float) -> Stamps:
    resume = ResumeRecord(
        "step-000000000010-a0001",
        started=20.0,
        ended=23.0,
        bytes=1,
        seconds={"lookup": 0.5, "fetch": 2.0, "verify": 0.25, "decode": 0.1, "restore": 0.2},
    )
    return Stamps(disrupted, observed, exited, 11.0, 11.5, 15.0, resume, 23.75)


def test_a_crash_splits_into_parts_that_add_up() -> None:
    """SIGKILL at 10.0, the kubelet sees the exit at 10.05, the operator at 10.3."""
    parts = split(stamps(10.0, 10.3, 10.05))
    assert list(parts) == [*PARTS, "total"]
    want = {
        "notice": 0.3,
        "old_pod_exit": 0.0,  # the process was gone before the operator knew
        "decision": 0.7,
        "pod_start": 0.5,
        "process_start": 3.5,
        "setup": 5.0,
        "storage_read": 2.25,  # lookup + fetch, less the CRC32C in it
        "verify": 0.25,
        "restore": 0.3,  # decode + restore
        "resume_other": 0.2,  # 3 s of resume less 2.5 read and 0.3 restore
        "first_step": 0.75,
        "total": 13.75,
    }
    assert parts == pytest.approx(want)
    assert sum(v for k, v in parts.items() if k != "total") == pytest.approx(parts["total"])


def test_an_eviction_waits_for_the_old_process_before_the_decision() -> None:
    """The operator sees the DisruptionTarget at once; the process saves and exits at 10.6."""
    parts = split(stamps(10.0, 10.1, 10.6))
    assert parts["notice"] == pytest.approx(0.1)
    assert parts["old_pod_exit"] == pytest.approx(0.5)
    assert parts["decision"] == pytest.approx(0.4)
    assert sum(v for k, v in parts.items() if k != "total") == pytest.approx(parts["total"])


@pytest.mark.parametrize(
    ("xs", "q", "want"),
    [
        ([3.0], 50, 3.0),
        ([3.0], 99, 3.0),
        ([1.0, 2.0], 50, 1.5),
        ([4.0, 1.0, 3.0, 2.0], 50, 2.5),  # unsorted input
        ([1.0, 2.0, 3.0, 4.0, 5.0], 0, 1.0),
        ([1.0, 2.0, 3.0, 4.0, 5.0], 100, 5.0),
        ([1.0, 2.0, 3.0, 4.0, 5.0], 75, 4.0),
        (list(map(float, range(1, 11))), 99, 9.91),  # ten recoveries: near the max
    ],
)
def test_percentile_is_linear_between_ranks(xs: list[float], q: float, want: float) -> None:
    assert percentile(xs, q) == pytest.approx(want)


@pytest.mark.parametrize(("xs", "q"), [([], 50), ([1.0], -1), ([1.0], 101)])
def test_percentile_refuses_nonsense(xs: list[float], q: float) -> None:
    with pytest.raises(ValueError, match="percentile"):
        percentile(xs, q)


def test_summarize() -> None:
    assert summarize([2.0, 1.0, 3.0]) == {"n": 3, "min": 1.0, "p50": 2.0, "p99": 2.98, "max": 3.0}
