"""Accelerate's gradient accumulation as its docs teach it, over uneven epochs, with a
collate_fn that masks inputs from the global torch RNG (as `DataCollatorForLanguageModeling`
masks tokens); run as a subprocess by tests.

40 samples in batches of 4 are 10 batches an epoch; with 3 batches a step an epoch is steps
of 3, 3, 3 and 1 batches (Accelerate syncs at the end of the loader). argv: loss log, steps,
SIGTERM step (0: none), final weights path. Env ACCEL_TEST_SETUP, one of the setups below
(default: a prepared shuffled loader with `use_seedable_sampler=True`):
- `sampler`: the ResumableSampler pattern, a DataLoader built per epoch and not prepared
  (Accelerate then syncs every 3 batches, so steps span epochs, as in the plain loop);
- `workers`: the prepared loader with num_workers=2 (warned);
- `iterable`, `dispatch`, `stateful`: an IterableDataset, `dispatch_batches=True`,
  `use_stateful_dataloader=True` (refused at `from_accelerator`);
- `micro_step`: `lz.step()` on every micro-batch (refused); `sampler_micro_step` the same
  in the `sampler` pattern.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator, DataLoaderConfiguration
from accelerate.utils import set_seed
from torch import nn
from torch.utils.data import DataLoader, Dataset, IterableDataset, TensorDataset

from lazarus_trainer import Lazarus, ResumableSampler, leave
from lazarus_trainer.adapters.accelerate import from_accelerator, resume_batches

ACCUM, B = 3, 4
SETUP = os.environ.get("ACCEL_TEST_SETUP", "")

Row = tuple[torch.Tensor, torch.Tensor]


class Stream(IterableDataset[Row]):
    """The same rows as a stream."""

    def __init__(self, data: TensorDataset) -> None:
        self.data = data

    def __iter__(self) -> Iterator[Row]:
        for i in range(len(self.data)):
            yield self.data[i]


def mask_collate(rows: list[Row]) -> tuple[torch.Tensor, ...]:
    """Zero 15% of the inputs, drawn from the global RNG at fetch time."""
    x = torch.stack([r[0] for r in rows])
    y = torch.stack([r[1] for r in rows])
    return x.masked_fill(torch.rand(x.shape) < 0.15, 0.0), y


def setup_lazarus(
    accelerator: Accelerator, model: nn.Module, optimizer: Any, scheduler: Any, data: TensorDataset
) -> tuple[Lazarus, Any]:
    """The Lazarus of this setup and what `epoch_batches` draws from (a prepared loader, or
    the ResumableSampler of the loaders built per epoch)."""
    if SETUP.startswith("sampler"):
        sampler = ResumableSampler(len(data), seed=0)
        kw: dict[str, Any] = {"sampler": sampler}
        source: Any = sampler
    else:
        dataset: Dataset[Any] = Stream(data) if SETUP == "iterable" else data
        loader = DataLoader(
            dataset,
            batch_size=B,
            shuffle=SETUP != "iterable",
            collate_fn=mask_collate,
            num_workers=2 if SETUP == "workers" else 0,
        )
        source = accelerator.prepare(loader)
        kw = {"dataloader": source}
    lz = from_accelerator(accelerator, model=model, optimizer=optimizer, scheduler=scheduler, **kw)
    return lz, source


def epoch_batches(
    lz: Lazarus, accelerator: Accelerator, source: Any, data: TensorDataset
) -> Iterable[Row]:
    if isinstance(source, ResumableSampler):
        source.set_epoch(lz.epoch)
        return DataLoader(data, batch_size=B, sampler=source, collate_fn=mask_collate)
    source.set_epoch(lz.epoch)
    skip = resume_batches(lz)
    active: Iterable[Row] = accelerator.skip_first_batches(source, skip) if skip else source
    return active


def main() -> None:
    log_path, steps, sigterm_at, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    set_seed(0)
    config = DataLoaderConfiguration(
        use_seedable_sampler=True,
        dispatch_batches=True if SETUP == "dispatch" else None,
        use_stateful_dataloader=SETUP == "stateful",
    )
    accelerator = Accelerator(cpu=True, gradient_accumulation_steps=ACCUM, dataloader_config=config)
    g = torch.Generator().manual_seed(1)
    data = TensorDataset(torch.randn(40, 8, generator=g), torch.randn(40, 1, generator=g))
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 1))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / 5))
    model, optimizer = accelerator.prepare(model, optimizer)
    lz, source = setup_lazarus(accelerator, model, optimizer, scheduler, data)
    lz.resume()
    micro: list[str] = []
    with Path(log_path).open("a") as log:
        while lz.step_count < steps and not lz.should_stop:
            for x, y in epoch_batches(lz, accelerator, source, data):
                with accelerator.accumulate(model):
                    model.train()
                    loss = nn.functional.mse_loss(model(x), y)
                    accelerator.backward(loss)
                    optimizer.step()
                    optimizer.zero_grad()
                micro.append(float(loss.item()).hex())
                if SETUP.endswith("micro_step"):
                    lz.step(samples=x.shape[0])
                if not accelerator.sync_gradients:
                    continue
                scheduler.step()
                step = lz.step_count + 1
                log.write(json.dumps({"step": step, "loss": ",".join(micro)}) + "\n")
                log.flush()
                micro = []
                if step == sigterm_at:
                    os.kill(os.getpid(), signal.SIGTERM)
                lz.step(samples=B * ACCUM)
                if lz.should_stop or lz.step_count >= steps:
                    break
            else:
                lz.set_epoch(lz.epoch + 1)
    code = lz.close()
    weights: dict[str, Any] = accelerator.unwrap_model(model).state_dict()
    torch.save(weights, out)
    leave(code)


if __name__ == "__main__":
    main()
