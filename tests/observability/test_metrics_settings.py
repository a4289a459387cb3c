"""The finished-job window's setting: flag, environment (the chart's value), and a
one-line error for a value that is not a number of seconds."""

from __future__ import annotations

import pytest

from lazarus_operator.main import _parser
from lazarus_operator.metrics import KEEP_FINISHED_SECONDS

pytestmark = pytest.mark.unit
ENV = "LAZARUS_METRICS_KEEP_FINISHED_SECONDS"


def test_the_window_comes_from_the_flag_or_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(ENV, raising=False)
    assert _parser().parse_args([]).metrics_keep_finished == KEEP_FINISHED_SECONDS == 3600
    assert _parser().parse_args(["--metrics-keep-finished=0"]).metrics_keep_finished == 0
    monkeypatch.setenv(ENV, "90.5")
    assert _parser().parse_args([]).metrics_keep_finished == 90.5


@pytest.mark.parametrize("bad", ["-1", "nan", "inf", "1h", ""])
def test_a_bad_window_is_a_one_line_usage_error(
    bad: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(ENV, bad)
    with pytest.raises(SystemExit) as exit_:
        _parser().parse_args([])  # the environment's value, and the flag's (the chart's):
    with pytest.raises(SystemExit):
        _parser().parse_args([f"--metrics-keep-finished={bad}"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("lazarus-operator: error: argument --metrics-keep-finished")
    assert "Traceback" not in capsys.readouterr().err
