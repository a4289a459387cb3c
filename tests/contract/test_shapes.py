"""The shapes both sides share (lazarus_contract: termination, timings, identity) read
back on the other side as they were written: the trainer's own writers on one end, the
operator's own readers (classify, the step rate, the pod's environment) on the other."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from lazarus_contract import EXIT_PREEMPTED, OUTCOME_RUNNING, TERMINATION_MESSAGE_MAX_BYTES
from lazarus_contract import timings as ct
from lazarus_contract.termination import decode
from lazarus_operator.builders import JobRef, ResumePoint, build_env
from lazarus_operator.classify import Cause, classify, reported_step
from lazarus_operator.selection import trainer_pace
from lazarus_operator.spec import parse_spec
from lazarus_trainer.config import LazarusConfig
from lazarus_trainer.launch import exit_code
from lazarus_trainer.meta import SaveTimings, TrainerExtra
from lazarus_trainer.progress import ProgressReport
from lazarus_trainer.termination import Termination
from tests.operator.factories import NOW, job_spec

pytestmark = pytest.mark.unit


def ended_pod(message: str, code: int) -> dict[str, Any]:
    """A pod whose trainer container ended with `message` as its termination message."""
    state = {"terminated": {"exitCode": code, "reason": "Error", "message": message}}
    return {
        "metadata": {"name": "job-a1-0"},
        "spec": {"nodeName": "n1", "containers": [{"name": "trainer"}]},
        "status": {
            "phase": "Failed" if code else "Succeeded",
            "containerStatuses": [{"name": "trainer", "state": state}],
        },
    }


def classified(message: str, code: int) -> tuple[Cause, str, int | None, str]:
    end = classify(
        ended_pod(message, code),
        {"metadata": {"name": "n1"}},
        now=NOW,
        node_loss_timeout_s=30,
        permanent_exit_codes=frozenset({78}),
    )
    assert end is not None
    return end.cause, end.reason, end.step, end.message


# (the trainer's Termination, what the operator reads: cause, reason, step)
FINAL = [
    (Termination("completed", 900, ("step-000000000900-a0001", 900), "done"), Cause.SUCCEEDED, 900),
    (
        Termination("preempted", 640, ("step-000000000640-a0002", 640), "SIGTERM", True),
        Cause.DISRUPTED,
        640,
    ),
    (Termination("permanent-error", -1, None, "bad config"), Cause.PERMANENT, -1),
    (Termination("error", 12, None, "x" * 20_000), Cause.FAILED, 12),
]


@pytest.mark.parametrize(("term", "cause", "step"), FINAL, ids=lambda x: getattr(x, "outcome", ""))
def test_a_final_message_reads_back_in_the_operator_and_the_launcher(
    term: Termination, cause: Cause, step: int, tmp_path: Path
) -> None:
    text = term.to_json()
    assert len(text.encode()) <= TERMINATION_MESSAGE_MAX_BYTES  # Kubernetes keeps no more
    got_cause, _, got_step, message = classified(text, term.exit_code)
    assert (got_cause, got_step) == (cause, step)
    assert term.message.startswith(message.rstrip(".")[:100])
    path = tmp_path / "termination-log"
    path.write_text(text)
    assert exit_code(1, path) == term.exit_code  # torchrun's 1 hides it; the message tells
    msg = decode(text)
    assert msg.saved_on_signal == term.saved_on_signal
    last = msg.last_checkpoint
    assert ((last.name, last.step) if last else None) == term.last_checkpoint


def test_the_progress_signal_reads_back_after_a_shorter_record(tmp_path: Path) -> None:
    """The signal rewrites the file in place, padded to the longest record: the operator
    reads the newest step of an ungraceful end, and the launcher maps nothing."""
    path = tmp_path / "termination-log"
    now: list[Any] = [123456, ("step-000000123000-a0007", 123000)]
    report = ProgressReport(lambda: (now[0], now[1]), path=path, interval=60)
    report.start()
    report.flush()
    now[:] = [7, None]  # shorter: padded with spaces
    report.flush()
    raw = path.read_text()
    assert raw.endswith(" ")
    assert reported_step(ended_pod(raw, 137)) == 7
    assert decode(raw).outcome == OUTCOME_RUNNING and decode(raw).last_checkpoint is None
    assert exit_code(-9, path) == 137
    assert exit_code(EXIT_PREEMPTED, path) == EXIT_PREEMPTED


def test_the_trainers_timings_read_back_in_the_operator() -> None:
    saved = SaveTimings(0.5, 2.0, 2.5, 4096, 3, resume_seconds=7.25, steps_per_second=12.3456789)
    extra = TrainerExtra(3, 1, "replicated", saved.to_json()).to_extra()
    assert trainer_pace(extra) == pytest.approx(12.345679)
    got = ct.decode(extra)
    assert (got.stall_seconds, got.save_seconds, got.durable_seconds) == (0.5, 2.0, 2.5)
    assert (got.bytes, got.attempt, got.resume_seconds) == (4096, 3, 7.25)


def test_the_job_identity_the_operator_sets_is_the_one_the_trainer_records(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    job = JobRef("train", "team-a", "0b1c-uid")
    spec = parse_spec(job_spec())
    env = build_env(job, spec, 4, 0, ResumePoint("auto"))
    for e in env:
        if "value" in e:
            monkeypatch.setenv(e["name"], e["value"])
    cfg = LazarusConfig.from_env()
    assert (cfg.job_name, cfg.job_namespace, cfg.job_uid, cfg.attempt) == (
        "train",
        "team-a",
        "0b1c-uid",
        4,
    )
