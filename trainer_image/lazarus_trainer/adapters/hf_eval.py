"""When HF's Trainer evaluates, and what its evaluation must hold: the timing and checks
LazarusCallback's evaluation reporting relies on (hf_trainer.py)."""

from __future__ import annotations

from typing import Any

from ..termination import PermanentError


def epoch_eval_follows(args: Any, state: Any) -> bool:
    """Under `eval_strategy="epoch"`, whether HF evaluates after this step: at the epoch's
    last step (`state.epoch` is then whole) or the last of training (HF's `on_epoch_end`
    runs after either), once `eval_delay` has passed."""
    if getattr(args, "eval_strategy", None) != "epoch" or state.epoch is None:
        return False
    ends = float(state.epoch).is_integer() or state.global_step >= state.max_steps
    return bool(ends and args.eval_delay <= state.epoch)


def eval_parts(trainer: Any) -> int:
    """How many `on_evaluate` calls one of HF's evaluations makes: one per eval dataset."""
    datasets = getattr(trainer, "eval_dataset", None)
    return len(datasets) if isinstance(datasets, dict) and datasets else 1


def hf_missing(args: Any, results: dict[str, Any]) -> None:
    """HF's own `metric_for_best_model` must be among the results: HF raises KeyError for it
    right after this evaluation, which would exit 1 and be retried as a crash."""
    metric = getattr(args, "metric_for_best_model", None)
    if not metric:
        return
    key = metric if metric.startswith("eval_") else f"eval_{metric}"
    if key not in results:
        raise PermanentError(
            f"metric_for_best_model={metric!r} ({key}) is not among the evaluation results "
            f"{sorted(results)}: name one of them in TrainingArguments"
        )
