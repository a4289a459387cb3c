"""An HF Trainer script written the way HF's docs teach, with Lazarus' two lines (a subprocess
of tests/trainer/test_hf_user_e2e.py): masked-token training whose collator masks from
torch's global RNG (as `DataCollatorForLanguageModeling` does), `compute_metrics` with
`metric_for_best_model="accuracy"`, `EarlyStoppingCallback`, optionally an `IterableDataset`,
data workers, fp16 with a GradScaler, a PEFT model, `fsdp=` or `deepspeed=`.

argv: loss log, max steps, final weights path, HF output dir. Env: HF_USER_SIGTERM_AT /
HF_USER_KILL_AT (SIGTERM, or SIGKILL once the saves in flight committed, after that step),
HF_USER_ACCUM, HF_USER_GREATER ("1"/"0"), HF_USER_METRIC (default "accuracy"),
HF_USER_PATIENCE (EarlyStoppingCallback), HF_USER_ITERABLE=1, HF_USER_SHARD=1
(dispatch_batches=False), HF_USER_WORKERS=N, HF_USER_FP16=1 (the log gets each step's scale
and growth tracker), HF_USER_PEFT=lora|loha|lokr|ia3|adalora|two (a LoRA adapter and a second
one)|qlora (LoRA on a 4-bit base)|prompt|ptuning|prefix|multitask (prompt learning on a
GPT-2), HF_USER_FSDP=1 (under torchrun), HF_USER_DEEPSPEED=1, HF_USER_PERTURB=1 (one weight
of the base nudged before the PEFT model wraps it: another base).
FINAL.best gets load_best's weights, FINAL.state HF's best_metric, global step and the names
of the parameters that train.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from transformers import EarlyStoppingCallback, Trainer, TrainerCallback, TrainingArguments

from lazarus_trainer import leaving
from lazarus_trainer.adapters.hf_trainer import LazarusCallback

VOCAB, LEN, MASK = 24, 12, 0


class MaskedLM(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(VOCAB, 32)
        self.drop = nn.Dropout(0.1)
        self.out = nn.Linear(32, VOCAB)

    def forward(self, input_ids: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        logits = self.out(self.drop(self.emb(input_ids)))
        loss = nn.functional.cross_entropy(logits.flatten(0, 1), labels.flatten())
        return {"loss": loss, "logits": logits}


def rows(n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    base = torch.randint(1, VOCAB, (n, 1), generator=g)
    return (base + torch.arange(LEN)) % (VOCAB - 1) + 1  # learnable: each token predicts the next


class Rows(torch.utils.data.Dataset[dict[str, torch.Tensor]]):
    def __init__(self, n: int, seed: int) -> None:
        self.x = rows(n, seed)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.x[i]}


class Stream(torch.utils.data.IterableDataset[dict[str, torch.Tensor]]):
    def __init__(self, n: int, seed: int) -> None:
        self.x = rows(n, seed)

    def __iter__(self) -> Any:
        return ({"input_ids": x} for x in self.x)


def mask_tokens(features: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """DataCollatorForLanguageModeling's masking, tokenizer-free: 25% of positions, drawn
    from the global torch RNG, become MASK; the loss is on them only."""
    ids = torch.stack([f["input_ids"] for f in features])
    masked = torch.bernoulli(torch.full(ids.shape, 0.25)).bool()
    masked[:, 0] = True  # every row has a target
    labels = torch.where(masked, ids, torch.full_like(ids, -100))
    return {"input_ids": torch.where(masked, torch.full_like(ids, MASK), ids), "labels": labels}


def accuracy(pred: Any) -> dict[str, float]:
    logits, labels = pred.predictions, pred.label_ids
    logits = logits[:, -labels.shape[1] :]  # past prompt tuning's virtual tokens
    keep = labels != -100
    return {"accuracy": float((np.argmax(logits, -1)[keep] == labels[keep]).mean())}


class Hooks(TrainerCallback):  # type: ignore[misc]
    def __init__(self, log_path: str, out: str) -> None:
        self.log_path, self.out = log_path, out
        self.term = int(os.environ.get("HF_USER_SIGTERM_AT", "0"))
        self.kill = int(os.environ.get("HF_USER_KILL_AT", "0"))
        self.lazarus: LazarusCallback | None = None
        self.scaler: torch.amp.GradScaler | None = None

    def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        if self.scaler is not None:  # the scale the next step uses, and its growth tracker
            scaler = self.scaler.state_dict()
            with Path(self.log_path).open("a") as f:
                row = {"step": state.global_step, "scale": scaler["scale"]}
                f.write(json.dumps({**row, "growth": scaler["_growth_tracker"]}) + "\n")
        if state.global_step == self.term:
            os.kill(os.getpid(), signal.SIGTERM)
        if state.global_step == self.kill and self.lazarus is not None:
            self.lazarus.lz.pipeline.collect(None)  # the saves so far are committed
            os.kill(os.getpid(), signal.SIGKILL)

    def on_log(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        logs = {
            k: v
            for k, v in (kw.get("logs") or {}).items()
            if k in ("loss", "eval_loss", "eval_accuracy")
        }
        if logs:
            with Path(self.log_path).open("a") as f:
                f.write(json.dumps({"step": state.global_step, **logs}) + "\n")

    def on_train_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        # Before LazarusCallback's (always last), so before load_best: the final weights.
        torch.save(kw["model"].state_dict(), self.out)


class CpuAmpTrainer(Trainer):  # type: ignore[misc]
    """fp16 as Accelerate sets it up on a GPU (autocast and a `torch.amp.GradScaler` on the
    device, which HF's loop scales, unscales, steps and updates), on CPU: Accelerate leaves
    both out there (fp16=True then trains in fp32), so they are put in after it."""

    def create_accelerator_and_postprocess(self) -> None:
        super().create_accelerator_and_postprocess()
        self.accelerator.native_amp = True
        # Near fp16's range, growing every 3 steps: it overflows, skips steps and backs off.
        self.accelerator.scaler = torch.amp.GradScaler("cpu", init_scale=2.0**17, growth_interval=3)


def training_args(workdir: str, steps: int) -> TrainingArguments:
    env = os.environ.get
    return TrainingArguments(
        output_dir=workdir,
        max_steps=steps,
        per_device_train_batch_size=4,
        gradient_accumulation_steps=int(env("HF_USER_ACCUM", "1")),
        learning_rate=1e-2,
        logging_steps=1,
        eval_strategy="steps",
        eval_steps=5,
        save_strategy="no",  # Lazarus saves
        metric_for_best_model=env("HF_USER_METRIC", "accuracy"),
        greater_is_better={"1": True, "0": False}.get(env("HF_USER_GREATER", "")),
        report_to="none",
        use_cpu=True,
        seed=0,
        disable_tqdm=True,
        dataloader_num_workers=int(env("HF_USER_WORKERS", "0")),
        accelerator_config={"dispatch_batches": False} if env("HF_USER_SHARD") == "1" else None,
        fp16=env("HF_USER_FP16") == "1",
        fsdp=env("HF_USER_FSDP") == "1",
        deepspeed={"train_micro_batch_size_per_gpu": 4, "zero_optimization": {"stage": 2}}
        if env("HF_USER_DEEPSPEED") == "1"
        else None,
    )


def model(workdir: str) -> nn.Module:
    """The script's model, or a PEFT model as PEFT's docs build one (HF_USER_PEFT)."""
    kind = os.environ.get("HF_USER_PEFT", "")
    if not kind:
        return MaskedLM()
    import peft

    if kind in ("qlora", "prompt", "ptuning", "prefix", "multitask"):
        return on_gpt2(workdir, kind)
    # A PeftModel over the custom model, as PEFT's docs wrap one: LoRA on the embedding and
    # the output projection, the other types on the output projection.
    configs: dict[str, Callable[[], Any]] = {
        "lora": lambda: peft.LoraConfig(
            r=8, lora_alpha=32, target_modules=["emb", "out"], lora_dropout=0.1
        ),
        "loha": lambda: peft.LoHaConfig(r=4, target_modules=["out"]),
        "lokr": lambda: peft.LoKrConfig(r=4, target_modules=["out"]),
        "ia3": lambda: peft.IA3Config(target_modules=["out"], feedforward_modules=[]),
        "adalora": lambda: peft.AdaLoraConfig(target_modules=["out"], total_step=10),
        "two": lambda: peft.LoraConfig(r=4, target_modules=["out"]),
    }
    base = MaskedLM()
    if os.environ.get("HF_USER_PERTURB") == "1":
        with torch.no_grad():
            base.out.weight[0, 0] += 1e-3
    wrapped: Any = peft.get_peft_model(base, configs[kind]())
    if kind == "two":  # a second adapter beside the trained one
        wrapped.add_adapter("second", peft.LoraConfig(r=2, target_modules=["out"]))
    return wrapped  # type: ignore[no-any-return]


def on_gpt2(workdir: str, kind: str) -> nn.Module:
    """PEFT on a base loaded as users load one (a tiny GPT-2, saved here first): QLoRA as
    PEFT's docs teach it (the base in 4 bits, bitsandbytes on CPU, made ready for k-bit
    training, LoRA on it), or prompt learning (4 virtual tokens) on the base."""
    import peft
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig, GPT2Config, GPT2LMHeadModel

    base = Path(workdir) / "base"
    shape = {"n_layer": 1, "n_embd": 32, "n_head": 2, "vocab_size": VOCAB, "n_positions": 16}
    GPT2LMHeadModel(GPT2Config(**shape, bos_token_id=MASK, eos_token_id=MASK)).save_pretrained(base)
    prompts = {
        "prompt": peft.PromptTuningConfig,
        "ptuning": peft.PromptEncoderConfig,
        "prefix": peft.PrefixTuningConfig,
        "multitask": peft.MultitaskPromptTuningConfig,
    }
    if kind in prompts:
        lm = AutoModelForCausalLM.from_pretrained(base)
        config = prompts[kind](task_type="CAUSAL_LM", num_virtual_tokens=4)
        return peft.get_peft_model(lm, config)
    quant = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4")
    lm = AutoModelForCausalLM.from_pretrained(base, quantization_config=quant, device_map="cpu")
    lm = peft.prepare_model_for_kbit_training(lm)  # type: ignore[no-untyped-call]
    return peft.get_peft_model(lm, peft.LoraConfig(r=4, target_modules=["c_attn"]))


def main() -> None:
    log_path, steps, out, workdir = sys.argv[1:5]
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    torch.manual_seed(0)
    env = os.environ.get
    hooks = Hooks(log_path, out)
    callbacks: list[Any] = [hooks]
    if patience := env("HF_USER_PATIENCE"):
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=int(patience)))
    trainer_class = CpuAmpTrainer if env("HF_USER_FP16") == "1" else Trainer
    trainer = trainer_class(
        model=model(workdir),
        args=training_args(workdir, int(steps)),
        train_dataset=Stream(40, 1) if env("HF_USER_ITERABLE") == "1" else Rows(36, 1),
        eval_dataset=Rows(16, 2),
        data_collator=mask_tokens,
        compute_metrics=accuracy,
        callbacks=callbacks,
    )
    hooks.scaler = trainer.accelerator.scaler
    lazarus = hooks.lazarus = LazarusCallback(trainer, load_best=True)
    trainer.train(resume_from_checkpoint=lazarus.resume_checkpoint())
    torch.save(trainer.model.state_dict(), out + ".best")
    states = {"best_metric": trainer.state.best_metric, "step": trainer.state.global_step}
    # Which parameters train and which stay frozen (a PEFT model's split) as the run ends.
    states["trainable"] = [n for n, p in trainer.model.named_parameters() if p.requires_grad]
    Path(out + ".state").write_text(json.dumps(states))


if __name__ == "__main__":
    with leaving():
        main()
