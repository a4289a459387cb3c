"""HF `Trainer` + `LazarusCallback`: every way of naming the eval metric (Lazarus' settings or
HF's `metric_for_best_model`, with or without the `eval_` prefix) either yields `eval-best`
checkpoints, or says so once; HF's own metric missing from the results exits 78.

A real `Trainer` trains in this process (4 steps, evaluations at 2 and 4) into a local root.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn
from transformers import Trainer, TrainingArguments

from lazarus_store import open_store
from lazarus_trainer import LazarusConfig
from lazarus_trainer.adapters.hf_trainer import LazarusCallback

pytestmark = pytest.mark.e2e


class Regression(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Linear(4, 1)

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"loss": nn.functional.mse_loss(self.net(x), labels)}


class Data(torch.utils.data.Dataset[dict[str, torch.Tensor]]):
    def __init__(self, n: int) -> None:
        g = torch.Generator().manual_seed(n)
        self.x, self.y = torch.randn(n, 4, generator=g), torch.randn(n, 1, generator=g)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"x": self.x[i], "labels": self.y[i]}


def _train(
    tmp: Path,
    lazarus_metric: str,
    hf_metric: str | None,
    *,
    load_best: bool = False,
    datasets: int = 1,
) -> tuple[LazarusCallback, set[str]]:
    args = TrainingArguments(
        output_dir=str(tmp / "hf-out"),
        max_steps=4,
        per_device_train_batch_size=4,
        eval_strategy="steps",
        eval_steps=2,
        metric_for_best_model=hf_metric,
        save_strategy="no",
        report_to="none",
        use_cpu=True,
        disable_tqdm=True,
    )
    # Several eval datasets: a dict, whose results HF names eval_a_*, eval_b_*, ...
    evals: Any = Data(8) if datasets == 1 else {"ab"[i]: Data(8 + i) for i in range(datasets)}
    trainer = Trainer(model=Regression(), args=args, train_dataset=Data(32), eval_dataset=evals)
    config = LazarusConfig.from_env(
        checkpoint_uri=str(tmp / "root"), eval_metric=lazarus_metric, handle_signals=False
    )
    callback = LazarusCallback(trainer, config, load_best=load_best)
    trainer.train(resume_from_checkpoint=callback.resume_checkpoint())
    store = open_store(str(tmp / "root"))
    reasons = {c.manifest.reason for c in store.list_checkpoints() if c.manifest is not None}
    return callback, reasons


@pytest.fixture(autouse=True)
def _env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("RESUME_FROM", "EVAL_METRIC", "EVAL_MODE", "SAVE_EVERY_STEPS", "ATTEMPT"):
        monkeypatch.delenv(f"LAZARUS_{var}", raising=False)
    monkeypatch.setenv("LAZARUS_TERMINATION_LOG", str(tmp_path / "termination.json"))
    monkeypatch.setenv("LAZARUS_ANNOTATIONS_FILE", str(tmp_path / "annotations"))


def _warnings(caplog: pytest.LogCaptureFixture, text: str) -> list[str]:
    return [m for r in caplog.records if text in (m := r.getMessage())]


# (LAZARUS_EVAL_METRIC, metric_for_best_model, load_best, eval datasets) -> the key used,
# its mode.
FOUND = [
    ("loss", None, False, 1, "eval_loss", "min"),  # HF's spelling in Lazarus' setting
    ("eval_loss", None, False, 1, "eval_loss", "min"),
    ("", "loss", False, 1, "eval_loss", "min"),  # HF's own setting, both spellings
    ("", "eval_loss", False, 1, "eval_loss", "min"),
    ("eval_loss", "loss", False, 1, "eval_loss", "min"),  # both: Lazarus' wins
    ("", None, True, 1, "eval_loss", "min"),  # load_best alone: HF's default for it, "loss"
    # Two eval datasets, the metric in the second one's results.
    ("", "b_loss", False, 2, "eval_b_loss", "min"),
    ("eval_b_loss", None, False, 2, "eval_b_loss", "min"),
]


@pytest.mark.parametrize(
    ("lazarus_metric", "hf_metric", "load_best", "datasets", "key", "mode"), FOUND
)
def test_each_spelling_of_the_metric_yields_eval_best(
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    lazarus_metric: str,
    hf_metric: str | None,
    load_best: bool,
    datasets: int,
    key: str,
    mode: str,
) -> None:
    caplog.set_level(logging.INFO, logger="lazarus")
    callback, reasons = _train(
        tmp_path, lazarus_metric, hf_metric, load_best=load_best, datasets=datasets
    )
    assert callback.lz.config.eval_metric == key and callback.lz.config.eval_mode == mode
    assert "eval-best" in reasons, reasons
    assert callback.lz.progress.best_step in (2, 4)
    # One history entry per evaluation, with every dataset's results.
    history = callback.lz.progress.metrics_history
    assert [h["step"] for h in history] == [2, 4] and all(key in h for h in history), history
    assert not _warnings(caplog, "not among the evaluation results")
    if load_best:
        assert callback.load_best() is not None


def test_a_metric_the_results_never_have_warns_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _, reasons = _train(tmp_path, "accuracy", None)
    assert "eval-best" not in reasons, reasons
    warned = _warnings(caplog, "not among the evaluation results")
    assert len(warned) == 1 and "'eval_accuracy'" in warned[0] and "eval_loss" in warned[0], warned


def test_no_metric_at_all_says_so_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="lazarus")
    _, reasons = _train(tmp_path, "", None)
    assert "eval-best" not in reasons, reasons
    said = _warnings(caplog, "no eval metric configured")
    assert len(said) == 1 and "LAZARUS_EVAL_METRIC" in said[0], said


def test_hf_metric_missing_from_the_results_exits_78(tmp_path: Path) -> None:
    """HF raises KeyError for it right after the evaluation (exit 1, retried as a crash)."""
    with pytest.raises(SystemExit) as exc:
        _train(tmp_path, "", "accuracy")
    assert exc.value.code == 78
    term: dict[str, Any] = json.loads((tmp_path / "termination.json").read_text())
    assert term["outcome"] == "permanent-error", term
    assert "metric_for_best_model" in term["message"] and "eval_accuracy" in term["message"]
