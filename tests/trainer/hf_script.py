"""A tiny HF Trainer script with Lazarus added in two lines (run as a subprocess by tests).

argv: loss log, steps, SIGTERM step (0: none), final weights path, HF output dir. Optional
env: HF_TEST_ACCUM (gradient accumulation), HF_TEST_WARMUP (warmup steps),
HF_TEST_BEST_METRIC / HF_TEST_GREATER (metric_for_best_model / greater_is_better),
HF_TEST_LOAD_BEST=1 (LazarusCallback(load_best=True); the best weights go to FINAL.best),
HF_TEST_FAST_RETRY=1 (saves give up quickly), HF_TEST_EVAL_STRATEGY (default "steps", every 5;
"epoch": at each epoch's end), HF_TEST_TRAIN_ROWS (train on the first N rows only),
HF_TEST_EVAL_SLEEP (seconds each evaluation takes longer). FINAL.history
gets the shape of HF's log_history. It ends as docs/trainer.md's snippet does: `trainer.train(...)`
returns or raises SystemExit with the contract's code, inside `with leaving():`.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import Trainer, TrainerCallback, TrainingArguments

from lazarus_trainer import LazarusConfig, leaving
from lazarus_trainer.adapters.hf_trainer import LazarusCallback
from lazarus_trainer.reference.data import CharDataset, generate_text


class TinyLM(nn.Module):
    def __init__(self, vocab: int) -> None:
        super().__init__()
        self.emb = nn.Embedding(vocab, 32)
        self.drop = nn.Dropout(0.2)
        self.out = nn.Linear(32, vocab)

    def forward(self, input_ids: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        logits = self.out(self.drop(self.emb(input_ids)))
        loss = nn.functional.cross_entropy(logits.flatten(0, 1), labels.flatten())
        return {"loss": loss, "logits": logits}


class Rows(torch.utils.data.Dataset[dict[str, torch.Tensor]]):
    def __init__(self, ds: CharDataset, n: int = 0) -> None:
        self.ds = ds
        self.n = n or len(ds)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        x, y = self.ds[i]
        return {"input_ids": x, "labels": y}


class Hooks(TrainerCallback):  # type: ignore[misc]
    def __init__(self, log_path: str, sigterm_at: int, out: str) -> None:
        self.log_path = log_path
        self.sigterm_at = sigterm_at
        self.out = out

    def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        if state.global_step == self.sigterm_at:
            os.kill(os.getpid(), signal.SIGTERM)

    def on_evaluate(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        time.sleep(float(os.environ.get("HF_TEST_EVAL_SLEEP", "0")))

    def on_log(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        logs = kw.get("logs") or {}
        for key in ("loss", "eval_loss"):
            if key in logs:
                with Path(self.log_path).open("a") as f:
                    f.write(json.dumps({"step": state.global_step, key: logs[key]}) + "\n")

    def on_train_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        # Runs before LazarusCallback's (added later), so before load_best: the final weights.
        torch.save(kw["model"].state_dict(), self.out)
        # The shape of HF's log_history (each entry's step and keys), which a resume restores.
        shape = [[e.get("step"), sorted(e)] for e in state.log_history]
        Path(self.out + ".history").write_text(json.dumps(shape))


def main() -> None:
    log_path, steps, sigterm_at, out, workdir = sys.argv[1:6]
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    torch.manual_seed(0)  # the model is built before Trainer seeds anything
    text = generate_text(300, seed=5)
    train = CharDataset(text, 16)
    evals = CharDataset(generate_text(20, seed=6), 16, train.vocab)
    args = TrainingArguments(
        output_dir=workdir,
        max_steps=int(steps),
        per_device_train_batch_size=4,
        learning_rate=5e-3,
        logging_steps=1,
        save_strategy="no",
        eval_strategy=os.environ.get("HF_TEST_EVAL_STRATEGY", "steps"),
        eval_steps=5,
        report_to="none",
        gradient_accumulation_steps=int(os.environ.get("HF_TEST_ACCUM", "1")),
        warmup_steps=int(os.environ.get("HF_TEST_WARMUP", "0")),
        metric_for_best_model=os.environ.get("HF_TEST_BEST_METRIC") or None,
        greater_is_better={"1": True, "0": False}.get(os.environ.get("HF_TEST_GREATER", "")),
        use_cpu=True,
        seed=0,
        dataloader_num_workers=0,
        disable_tqdm=True,
    )
    trainer = Trainer(
        model=TinyLM(len(train.vocab)),
        args=args,
        train_dataset=Rows(train, int(os.environ.get("HF_TEST_TRAIN_ROWS", "0"))),
        eval_dataset=Rows(evals),
        callbacks=[Hooks(log_path, int(sigterm_at), out)],
    )
    load_best = os.environ.get("HF_TEST_LOAD_BEST") == "1"
    config = None
    if os.environ.get("HF_TEST_FAST_RETRY") == "1":
        config = LazarusConfig.from_env(save_retries=1, retry_backoff=0.05)
    lazarus = LazarusCallback(trainer, config, load_best=load_best)
    trainer.train(resume_from_checkpoint=lazarus.resume_checkpoint())
    if load_best:
        torch.save(trainer.model.state_dict(), out + ".best")


if __name__ == "__main__":
    with leaving():
        main()
