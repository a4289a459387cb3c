"""Pure pieces: sampler positions, snapshots, annotations, termination messages."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from lazarus_contract import TERMINATION_MESSAGE_MAX_BYTES
from lazarus_trainer import Lazarus, LazarusConfig
from lazarus_trainer.data import ResumableSampler
from lazarus_trainer.requests import parse_annotations
from lazarus_trainer.run_state import StepClock
from lazarus_trainer.snapshot import snapshot
from lazarus_trainer.termination import Termination

pytestmark = pytest.mark.unit


def test_sampler_resumes_at_offset_without_replay() -> None:
    full = list(ResumableSampler(50, seed=3))
    s = ResumableSampler(50, seed=3)
    s.advance(20)
    u = ResumableSampler(50, seed=3)
    u.load_state_dict(s.state_dict())
    assert list(u) == full[20:]


def test_sampler_global_position_survives_world_size_change() -> None:
    order = list(ResumableSampler(48, seed=1))
    state = {"epoch": 0, "offset": 16, "seed": 1}
    seen = []
    for rank in range(4):
        s = ResumableSampler(48, seed=1, rank=rank, world_size=4)
        s.load_state_dict(state)
        seen += list(s)
    assert sorted(seen) == sorted(order[16:])


def test_snapshot_is_a_copy_and_reuses_buffers() -> None:
    t = torch.arange(6.0)
    first = snapshot({"w": t, "n": [1, "x"]})
    t += 1
    assert torch.equal(first["w"], torch.arange(6.0)) and first["n"] == [1, "x"]
    again = snapshot({"w": t, "n": [1, "x"]}, reuse=first)
    assert again["w"] is first["w"] and torch.equal(again["w"], t)


def test_parse_downward_api_annotations() -> None:
    text = 'a="1"\nlazarus.dev/checkpoint-now="2026-01-01T00:00:00Z"\nq="say \\"hi\\""\n'
    got = parse_annotations(text)
    assert got["lazarus.dev/checkpoint-now"] == "2026-01-01T00:00:00Z"
    assert got["q"] == 'say "hi"'


def test_termination_message_fits_kubernetes_limit() -> None:
    term = Termination("preempted", 7, ("step-000000000007-a0001", 7), "x" * 10000)
    raw = term.to_json()
    doc = json.loads(raw)
    assert len(raw.encode()) <= TERMINATION_MESSAGE_MAX_BYTES
    assert doc["exitCode"] == 75 and doc["lastCheckpoint"]["step"] == 7


def test_an_absent_eval_metric_warns_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    for var in ("LAZARUS_RESUME_FROM", "LAZARUS_EVAL_MODE", "LAZARUS_SAVE_EVERY_STEPS"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("LAZARUS_TERMINATION_LOG", str(tmp_path / "termination.json"))
    monkeypatch.setenv("LAZARUS_ANNOTATIONS_FILE", str(tmp_path / "annotations"))
    cfg = LazarusConfig.from_env(
        checkpoint_uri=str(tmp_path / "root"), eval_metric="accuracy", handle_signals=False
    )
    lz = Lazarus(cfg).register(model=torch.nn.Linear(2, 1))
    for _ in range(3):
        lz.step(eval_follows=True)
        assert not lz.report_eval({"eval_loss": 1.0})
    warned = [m for r in caplog.records if "not among the evaluation" in (m := r.getMessage())]
    assert len(warned) == 1 and "eval_loss" in warned[0], warned


@pytest.mark.parametrize(
    ("raw", "handled"),
    [(None, True), ("", True), ("1", True), ("true", True), ("0", False), ("off", False)],
)
def test_lazarus_handle_signals_env_decides_who_owns_sigterm(
    raw: str | None, handled: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """LAZARUS_HANDLE_SIGNALS=0 leaves SIGTERM to Python's default (the process ends, no
    preemption save: bench/goodput.py's periodic-only mode); unset or 1, Lazarus records it."""
    import signal

    monkeypatch.setenv("LAZARUS_CHECKPOINT_URI", str(tmp_path / "root"))
    monkeypatch.setenv("LAZARUS_TERMINATION_LOG", str(tmp_path / "termination.json"))
    monkeypatch.setenv("LAZARUS_ANNOTATIONS_FILE", str(tmp_path / "annotations"))
    if raw is None:
        monkeypatch.delenv("LAZARUS_HANDLE_SIGNALS", raising=False)
    else:
        monkeypatch.setenv("LAZARUS_HANDLE_SIGNALS", raw)
    before = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        cfg = LazarusConfig.from_env()
        assert cfg.handle_signals is handled
        lz = Lazarus(cfg)
        installed = signal.getsignal(signal.SIGTERM)
        assert (installed == lz.signal._handle) is handled, installed
        assert (installed is signal.SIG_DFL) is not handled
    finally:
        for s, h in before.items():
            signal.signal(s, h)


def test_lazarus_handle_signals_env_refuses_a_non_boolean(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lazarus_trainer.termination import PermanentError

    monkeypatch.setenv("LAZARUS_CHECKPOINT_URI", str(tmp_path / "root"))
    monkeypatch.setenv("LAZARUS_HANDLE_SIGNALS", "maybe")
    with pytest.raises(PermanentError, match="LAZARUS_HANDLE_SIGNALS"):
        LazarusConfig.from_env()


@pytest.mark.parametrize(
    ("ticks", "at", "want"),
    [
        ([], (5, 10.0), None),  # no step yet
        ([(1, 10.0)], (1, 10.0), None),  # one step: no interval to measure
        ([(1, 10.0)], (5, 12.0), 2.0),  # 4 steps in 2 s
        # the first tick is kept: a resumed attempt's pace runs from its own first step
        ([(101, 10.0), (102, 10.5), (103, 11.0)], (111, 15.0), 2.0),
        ([(1, 10.0)], (5, 9.0), None),  # a clock that went back says nothing
    ],
)
def test_step_clock_measures_the_pace_from_the_first_step(
    ticks: list[tuple[int, float]], at: tuple[int, float], want: float | None
) -> None:
    clock = StepClock()
    for step, now in ticks:
        clock.tick(step, now)
    assert clock.rate(*at) == want
