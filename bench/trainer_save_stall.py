"""Per-save training stall: torch.save+upload, HF Trainer, Lazarus sync/async, clone floor.

    python bench/trainer_save_stall.py --d-model 768 --layers 3 --reps 5 --idle 3

The stall is the time the training loop is blocked by one save. Saves are spaced by idle
seconds because this machine reclaims freed memory: back-to-back saves look faster than
real ones. All methods run in one process on the same model and optimizer state.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lazarus_store import open_store
from lazarus_trainer.api import Lazarus
from lazarus_trainer.config import LazarusConfig
from lazarus_trainer.reference.model import TinyGPT
from lazarus_trainer.snapshot import tensor_bytes


class WithLoss(nn.Module):
    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, input_ids: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        logits = self.inner(input_ids)
        return {"loss": nn.functional.cross_entropy(logits.flatten(0, 1), labels.flatten())}


def measure(
    name: str, fn: Callable[[], None], reps: int, idle: float, after: Callable[[], None]
) -> dict[str, Any]:
    times = []
    for _ in range(reps):
        time.sleep(idle)
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
        after()  # background work finishes outside the timed region
    row = {
        "method": name,
        "median_s": statistics.median(times),
        "all_s": [round(t, 4) for t in times],
    }
    print(f"{name:34s} median {row['median_s']:.3f}s  {row['all_s']}", flush=True)
    return row


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--d-model", type=int, default=768)
    ap.add_argument("--layers", type=int, default=3)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--idle", type=float, default=3.0)
    ap.add_argument("--uri", default="", help="checkpoint root (default: a temporary directory)")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    torch.set_num_threads(2)

    from transformers import Trainer, TrainingArguments

    work = Path(tempfile.mkdtemp(prefix="lazarus-bench-"))
    uri = args.uri or str(work / "store")
    vocab, seq = 64, 32
    model = WithLoss(
        TinyGPT(vocab, d_model=args.d_model, n_layers=args.layers, n_heads=8, max_len=seq)
    )
    data = [
        {"input_ids": torch.randint(0, vocab, (seq,)), "labels": torch.randint(0, vocab, (seq,))}
        for _ in range(8)
    ]
    targs = TrainingArguments(
        output_dir=str(work / "hf"),
        max_steps=1,
        per_device_train_batch_size=4,
        save_strategy="no",
        report_to="none",
        use_cpu=True,
        disable_tqdm=True,
        save_only_model=False,
    )
    trainer = Trainer(model=model, args=targs, train_dataset=data)
    trainer.train()  # one step: the optimizer now holds its Adam state
    optimizer, scheduler = trainer.optimizer, trainer.lr_scheduler
    state = {"model": model.state_dict(), "optimizer": optimizer.state_dict()}
    mb = tensor_bytes(state) / 1e6
    print(f"state: {mb:.0f} MB (model + AdamW), reps {args.reps}, idle {args.idle}s", flush=True)

    store = open_store(uri)
    counter = iter(range(1, 1_000_000))

    def torch_save_then_upload() -> None:
        path = work / "ckpt.pt"
        torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict()}, path)
        w = store.begin(step=next(counter), attempt=9)
        w.put_file("state.pt", path)
        w.commit(reason="periodic")

    def hf_save() -> None:
        trainer.state.global_step = next(counter)
        trainer._save_checkpoint(trainer.model, trial=None)

    def lazarus(async_save: bool) -> Lazarus:
        cfg = LazarusConfig(
            checkpoint_uri=uri,
            attempt=1 if async_save else 2,
            async_save=async_save,
            save_every_steps=1,
            handle_signals=False,
            save_at_end=False,
        )
        lz = Lazarus(cfg)
        lz.register(model=model, optimizer=optimizer, scheduler=scheduler)
        return lz

    lz_sync, lz_async = lazarus(False), lazarus(True)

    def clone() -> None:
        sd = {"model": model.state_dict(), "optimizer": optimizer.state_dict()}
        _ = {k: v.clone() for k, v in sd["model"].items()}
        _ = {
            i: {k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in s.items()}
            for i, s in sd["optimizer"]["state"].items()
        }

    def wait_async() -> None:
        lz_async.pipeline.collect(None)  # and apply its outcome

    nothing: Callable[[], None] = lambda: None  # noqa: E731
    rows = [
        measure(
            "(a) torch.save to disk + upload", torch_save_then_upload, args.reps, args.idle, nothing
        ),
        measure("(b) HF Trainer _save_checkpoint", hf_save, args.reps, args.idle, nothing),
        measure("(c) Lazarus synchronous", lz_sync.step, args.reps, args.idle, nothing),
        measure("(d) Lazarus async", lz_async.step, args.reps, args.idle, wait_async),
        measure("(e) in-memory clone (floor)", clone, args.reps, args.idle, nothing),
    ]
    floor = rows[-1]["median_s"]
    ratio = rows[3]["median_s"] / floor
    print(f"async / floor = {ratio:.2f} (target <= 1.5)")
    if args.json:
        args.json.write_text(
            json.dumps({"state_mb": mb, "rows": rows, "async_over_floor": ratio}, indent=1)
        )


if __name__ == "__main__":
    main()
