"""An Accelerate script written as Accelerate's docs teach: a shuffled DataLoader passed to
`accelerator.prepare()`, resumed with `skip_first_batches` (run as a subprocess by tests).

argv: loss log, steps, SIGTERM step (0: none), final weights path. Env: ACCEL_TEST_SEEDABLE
(default 1: `use_seedable_sampler=True`, the supported pattern; 0: refused).
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

import torch
from accelerate import Accelerator, DataLoaderConfiguration
from accelerate.utils import set_seed
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lazarus_trainer import leave
from lazarus_trainer.adapters.accelerate import from_accelerator, resume_batches


def main() -> None:
    log_path, steps, sigterm_at, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    set_seed(0)
    seedable = os.environ.get("ACCEL_TEST_SEEDABLE", "1") == "1"
    accelerator = Accelerator(
        cpu=True, dataloader_config=DataLoaderConfiguration(use_seedable_sampler=seedable)
    )
    g = torch.Generator().manual_seed(1)
    data = TensorDataset(torch.randn(40, 8, generator=g), torch.randn(40, 1, generator=g))
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 1))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / 5))
    loader = DataLoader(data, batch_size=4, shuffle=True)
    model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
    lz = from_accelerator(
        accelerator, model=model, optimizer=optimizer, scheduler=scheduler, dataloader=loader
    )
    lz.resume()
    with Path(log_path).open("a") as log:
        while lz.step_count < steps and not lz.should_stop:
            loader.set_epoch(lz.epoch)
            skip = resume_batches(lz)
            active = accelerator.skip_first_batches(loader, skip) if skip else loader
            for x, y in active:
                model.train()
                loss = nn.functional.mse_loss(model(x), y)
                accelerator.backward(loss)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad()
                step = lz.step_count + 1
                log.write(json.dumps({"step": step, "loss": float(loss.item()).hex()}) + "\n")
                log.flush()
                if step == sigterm_at:
                    os.kill(os.getpid(), signal.SIGTERM)
                lz.step(samples=x.shape[0])
                if lz.should_stop or lz.step_count >= steps:
                    break
            else:
                lz.set_epoch(lz.epoch + 1)
    code = lz.close()
    torch.save(accelerator.unwrap_model(model).state_dict(), out)
    leave(code)


if __name__ == "__main__":
    main()
