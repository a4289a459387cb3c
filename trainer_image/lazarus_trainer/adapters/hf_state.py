"""HF Trainer state as HF itself would save it, and the setups a resume cannot make exact.

HF refreshes part of its state only inside its own `_save_checkpoint`, which Lazarus
replaces: the `ExportableState` callbacks' states (`EarlyStoppingCallback`'s patience
counter) and, for a save right after an evaluation, the best metric `_determine_best_metric`
records after the evaluation's callbacks ran. `trainer_state_json` captures both the way
HF's save does; `restore_callback_states` puts the callbacks' states back on resume.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
from typing import Any

import torch

from ..config import LazarusConfig
from ..termination import PermanentError

log = logging.getLogger(__name__)

DEEPSPEED_PATH = (
    "DeepSpeed through lazarus_trainer.adapters.deepspeed.from_deepspeed in your own loop "
    "(docs/trainer.md, DeepSpeed)"
)


def hf_metric_name(metric: str) -> str:
    """The key HF's evaluation results use for `metric` (`_determine_best_metric`'s rule):
    every result is prefixed `eval_`, so `loss` is `eval_loss`."""
    return metric if metric.startswith("eval_") else f"eval_{metric}"


def hf_metric_config(config: LazarusConfig, args: Any, load_best: bool = False) -> LazarusConfig:
    """The eval metric, resolved to the key HF's results (and so manifests) carry before
    anything acts on it: Lazarus' own (`LAZARUS_EVAL_METRIC`), else `metric_for_best_model`
    with `greater_is_better` (HF's default: lower is better for names ending in `loss`),
    else, with `load_best`, eval loss (HF's `load_best_model_at_end` default)."""
    metric = getattr(args, "metric_for_best_model", None)
    if not config.eval_metric and not metric and load_best:
        config.eval_metric, config.eval_mode = "eval_loss", "min"
        log.info("load_best without an eval metric: using eval_loss (min), as HF does")
    elif not config.eval_metric and metric:
        config.eval_metric = hf_metric_name(str(metric))
        greater = getattr(args, "greater_is_better", None)
        if greater is None:  # TrainingArguments' own default
            greater = not str(metric).endswith("loss")
        config.eval_mode = "max" if greater else "min"
        mode = config.eval_mode
        log.info("eval metric from TrainingArguments: %s (%s)", config.eval_metric, mode)
    elif config.eval_metric:
        config.eval_metric = hf_metric_name(config.eval_metric)
    if load_best and config.keep_best < 1 and (config.keep_latest or config.keep_best):
        # Retention would otherwise be free to delete the checkpoint load_best loads.
        config.keep_best = 1
        log.info("load_best: retention keeps the best checkpoint (LAZARUS_KEEP_BEST=1)")
    return config


def refuse_unsupported(trainer: Any) -> None:
    """Setups whose state this adapter cannot resume exactly, refused before training."""
    args = trainer.args
    if getattr(args, "deepspeed", None) or getattr(trainer, "is_deepspeed_enabled", False):
        raise PermanentError(
            "HF Trainer with DeepSpeed (TrainingArguments(deepspeed=...)) is not supported: "
            "its ZeRO partitions are not the replicated files this adapter saves and HF's "
            f"resume loads. Use {DEEPSPEED_PATH}, or drop deepspeed= from TrainingArguments"
        )
    # HF's own flag first: Accelerate drops FSDP on CPU (a torchrun of fsdp= runs it as DDP)
    # but the same script shards on GPU nodes; is_fsdp_enabled also covers accelerate's config.
    if getattr(args, "fsdp", None) or getattr(trainer, "is_fsdp_enabled", False):
        raise PermanentError(
            "HF Trainer with FSDP (TrainingArguments(fsdp=...)) is not supported: its sharded "
            "state is not the replicated files this adapter saves. Use FSDP2 in your own "
            "loop with lazarus_trainer (docs/trainer.md, Sharded state)"
        )
    check_peft(getattr(trainer, "model", None))


# PEFT adapter types whose resume under HF Trainer a test proves bitwise equal to an
# uninterrupted run (tests/trainer/test_hf_user_e2e.py): HF loads the checkpoint's state dict
# over the PeftModel's own fingerprinted base, and these types hold all their state in it.
PEFT_VERIFIED = ("LORA", "LOHA", "LOKR", "IA3", "PROMPT_TUNING", "P_TUNING", "PREFIX_TUNING")


def peft_configs(model: Any) -> dict[str, Any] | None:
    """A PeftModel's adapters by name, or None for a model that is not one."""
    if type(model).__module__.startswith("peft"):
        return dict(getattr(model, "peft_config", None) or {}) or None
    return None


def quantization(model: Any) -> str | None:
    """How `model`'s weights are quantized, or None: HF's own flags (which a PeftModel passes
    on from its base), or bitsandbytes' parameters put in by hand."""
    quantizer = getattr(model, "hf_quantizer", None)
    config = getattr(getattr(model, "config", None), "quantization_config", None)
    if quantizer is not None or config:
        method = getattr(
            getattr(quantizer, "quantization_config", None) or config, "quant_method", ""
        )
        return f"quantization_config: {getattr(method, 'value', method) or 'set'}"
    for flag in ("is_loaded_in_4bit", "is_loaded_in_8bit", "is_quantized"):
        if getattr(model, flag, False) is True:
            return flag
    if isinstance(model, torch.nn.Module):
        for name, param in model.named_parameters():
            if type(param).__module__.startswith("bitsandbytes"):
                return f"{name} is bitsandbytes' {type(param).__name__}"
    return None


def check_peft(model: Any) -> None:
    """A PEFT model resumes exactly with one adapter of a verified type on a base that is
    not quantized (said once: its checkpoints hold the adapter, not the frozen base);
    anything else is refused, as is a quantized model."""
    how = quantization(model)
    if how is not None:
        raise PermanentError(
            f"HF Trainer with a quantized model ({how}) is not supported: resuming its "
            "quantized weights (and a QLoRA adapter on them) is not verified to be exact. Load "
            "the base without quantization_config (e.g. dtype=torch.bfloat16) to train "
            "its adapter with exact resumes"
        )
    if getattr(model, "_hf_peft_config_loaded", False):
        # transformers' add_adapter needs a PEFT release newer than any a test here can use.
        raise PermanentError(
            "HF Trainer with adapters that transformers' own add_adapter or load_adapter put "
            "in (no PeftModel) is not supported: their resume is not verified to be exact. "
            "Wrap the base with peft.get_peft_model(model, config) instead"
        )
    configs = peft_configs(model)
    if configs is None:
        return
    if len(configs) > 1:
        raise PermanentError(
            f"HF Trainer with a PEFT model holding {len(configs)} adapters ({', '.join(configs)}) "
            "is not supported: resuming several adapters (which one trains, which stay frozen) "
            "is not verified to be exact. Train one adapter a job: delete the others "
            "(model.delete_adapter(name)) or merge them into the base (merge_and_unload()) "
            "before Trainer(...)"
        )
    name, config = next(iter(configs.items()))
    kind = str(getattr(config.peft_type, "value", config.peft_type))
    if kind not in PEFT_VERIFIED:
        why = "prompt learning" if getattr(config, "is_prompt_learning", False) else "adapter"
        raise PermanentError(
            f"HF Trainer with PEFT's {kind} ({why}) is not supported: its resume is not "
            f"verified to be exact (verified: {', '.join(PEFT_VERIFIED)}). Use one of those "
            "(e.g. LoraConfig)"
        )
    whole, adapter = state_size(model)
    log.info(
        "PEFT %s adapter %r: each Lazarus checkpoint holds the adapter (%s trainable) with "
        "the optimizer and the rest of the run's state, not the frozen base (of %s in all), "
        "whose fingerprint it records: a resume onto another base is refused",
        kind,
        name,
        adapter,
        whole,
    )


def state_size(model: Any) -> tuple[str, str]:
    """The size of the model's state dict, and of its trainable parameters."""
    size = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    trainable = sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)
    return human(size), human(trainable)


def human(size: float) -> str:
    """`size` bytes in the largest unit (up to GiB) that keeps it at least 1."""
    for unit in ("B", "KiB", "MiB"):
        if size < 1024:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"


def warn_inexact(trainer: Any, loader: Any, fetch_tapped: bool) -> None:
    """Setups a resume continues, but not exactly as the uninterrupted run: said once."""
    from accelerate.data_loader import DataLoaderDispatcher

    args = trainer.args
    if isinstance(getattr(trainer, "train_dataset", None), torch.utils.data.IterableDataset):
        log.warning(
            "train_dataset is an IterableDataset: HF resumes it from the stream's start, "
            "skipping what it counts as trained, which Lazarus does not check: exact only "
            "for a stream that replays the same items in the same order (a resume past its "
            "first pass is refused); for more steps than one pass, make __iter__ repeat the data"
        )
    if getattr(args, "ignore_data_skip", False):
        log.warning(
            "ignore_data_skip=True: a resume restarts the interrupted epoch's data from its "
            "first batch (HF's setting); unset it for exact resumes"
        )
    workers = int(getattr(args, "dataloader_num_workers", 0) or 0)
    if workers and not fetch_tapped:
        log.warning(
            "dataloader_num_workers=%d: randomness drawn while loading data (a collator that "
            "masks tokens, a random augmentation) comes from worker processes a resume starts "
            "afresh, so it is not resumed exactly; dataloader_num_workers=0 makes it exact",
            workers,
        )
    if isinstance(loader, DataLoaderDispatcher) and not fetch_tapped:
        log.warning(
            "Accelerate dispatches the training batches (dispatch_batches, its default for an "
            "IterableDataset): randomness drawn while loading data (a collator that masks "
            "tokens, a random augmentation) is not resumed exactly; TrainingArguments("
            "accelerator_config={'dispatch_batches': False}) makes it exact"
        )


def refuse_past_first_pass(trainer: Any, trainer_state: dict[str, Any]) -> None:
    """HF resumes an IterableDataset at global_step // max_steps epochs and skips
    global_step batches of it: once the stream ended and restarted, that skips the wrong
    batches (or exhausts the stream). Refused before training instead."""
    if not isinstance(getattr(trainer, "train_dataset", None), torch.utils.data.IterableDataset):
        return
    epoch = float(trainer_state.get("epoch") or 0.0)
    if epoch >= 1.0:
        raise PermanentError(
            f"the checkpoint is past the first pass over the IterableDataset (epoch "
            f"{epoch:.2f}): HF resumes it by skipping {trainer_state.get('global_step')} "
            "batches from the stream's start, which is not where the run stopped. Make the "
            "dataset's __iter__ repeat the data so one pass covers max_steps, then start anew"
        )


def stateful_callbacks(trainer: Any) -> dict[str, Any]:
    """`TrainerState.stateful_callbacks` as `_save_checkpoint` refreshes it: every
    `ExportableState` callback's (and the control's) state now, a list for duplicates."""
    from transformers.trainer_callback import ExportableState

    out: dict[str, Any] = {}
    for cb in [*trainer.callback_handler.callbacks, trainer.control]:
        if not isinstance(cb, ExportableState):
            continue
        name, state = type(cb).__name__, cb.state()
        if name not in out:
            out[name] = state
        elif isinstance(out[name], list):
            out[name].append(state)
        else:
            out[name] = [out[name], state]
    return out


def restore_callback_states(trainer: Any, saved: dict[str, Any]) -> None:
    """Put the saved callbacks' attributes back on this run's callbacks of the same class, in
    order (HF's `_load_callback_state`, which it runs only when asked to, in place)."""
    callbacks = list(trainer.callback_handler.callbacks)
    for name, states in (saved or {}).items():
        same = [cb for cb in callbacks if type(cb).__name__ == name]
        for cb, state in zip(same, states if isinstance(states, list) else [states], strict=False):
            for attr, value in (state.get("attributes") or {}).items():
                setattr(cb, attr, value)
        if same:
            log.info("restored the state of callback %s from the checkpoint", name)


def after_evaluation(trainer: Any, state: Any, metrics: dict[str, Any]) -> Any:
    """A copy of `state` with the best metric HF records right after this evaluation's
    callbacks (its own `_determine_best_metric`, run on the copy)."""
    check = getattr(trainer, "_determine_best_metric", None)
    if check is None or not getattr(trainer.args, "metric_for_best_model", None):
        return state
    ahead = copy.copy(state)
    real = trainer.state
    trainer.state = ahead
    try:
        check(metrics=metrics, trial=None)
    finally:
        trainer.state = real
    return ahead


def trainer_state_json(
    trainer: Any, state: Any, evaluated: dict[str, Any] | None, log_len: int | None
) -> str:
    """What `TrainerState.save_to_json` writes at HF's save time, without a file."""
    if evaluated is not None:
        state = after_evaluation(trainer, state, evaluated)
    doc = dataclasses.asdict(state)
    doc["stateful_callbacks"] = stateful_callbacks(trainer)
    if log_len is not None:
        doc["log_history"] = doc["log_history"][:log_len]
    return json.dumps(doc, indent=2, sort_keys=True)
