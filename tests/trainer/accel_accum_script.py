"""Accelerate's gradient accumulation as its docs teach it, over uneven epochs, with a
collate_fn that masks inputs from the global torch RNG (as `DataCollatorForLanguageModeling`
masks tokens); run as a subprocess by tests.

40 samples in batches of 4 are 10 batches an epoch; with 3 batches a step an epoch is steps
of 3, 3, 3 and 1 batches (Accelerate syncs at the end of the loader). argv: loss log, steps,
SIGTERM step (0: none), final weights path.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator, DataLoaderConfiguration
from accelerate.utils import set_seed
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lazarus_trainer import leave
from lazarus_trainer.adapters.accelerate import from_accelerator, resume_batches

ACCUM = 3


def mask_collate(rows: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, ...]:
    """Zero 15% of the inputs, drawn from the global RNG at fetch time."""
    x = torch.stack([r[0] for r in rows])
    y = torch.stack([r[1] for r in rows])
    return x.masked_fill(torch.rand(x.shape) < 0.15, 0.0), y


def main() -> None:
    log_path, steps, sigterm_at, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    set_seed(0)
    accelerator = Accelerator(
        cpu=True,
        gradient_accumulation_steps=ACCUM,
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True),
    )
    g = torch.Generator().manual_seed(1)
    data = TensorDataset(torch.randn(40, 8, generator=g), torch.randn(40, 1, generator=g))
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 1))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / 5))
    loader = DataLoader(data, batch_size=4, shuffle=True, collate_fn=mask_collate)
    model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
    lz = from_accelerator(
        accelerator, model=model, optimizer=optimizer, scheduler=scheduler, dataloader=loader
    )
    lz.resume()
    micro: list[str] = []
    with Path(log_path).open("a") as log:
        while lz.step_count < steps and not lz.should_stop:
            loader.set_epoch(lz.epoch)
            skip = resume_batches(lz)
            active = accelerator.skip_first_batches(loader, skip) if skip else loader
            for x, y in active:
                with accelerator.accumulate(model):
                    model.train()
                    loss = nn.functional.mse_loss(model(x), y)
                    accelerator.backward(loss)
                    optimizer.step()
                    optimizer.zero_grad()
                micro.append(float(loss.item()).hex())
                if not accelerator.sync_gradients:
                    continue
                scheduler.step()
                step = lz.step_count + 1
                log.write(json.dumps({"step": step, "loss": ",".join(micro)}) + "\n")
                log.flush()
                micro = []
                if step == sigterm_at:
                    os.kill(os.getpid(), signal.SIGTERM)
                lz.step(samples=x.shape[0] * ACCUM)
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
