"""A plain step-based loop as users write one (run as a subprocess by tests): an endless
stream of batches over epochs, gradient accumulation whose steps span epoch boundaries, a
DataLoader built per epoch without a generator of its own, and a collate_fn that masks
inputs from the global torch RNG.

40 samples in batches of 4 are 10 batches an epoch; 3 batches a step, so steps 4 and 7 take
batches of two epochs. argv: loss log, steps, SIGTERM step (0: none), final weights path.
Env PLAIN_TEST_WORKERS: the DataLoader's num_workers (default 0); PLAIN_TEST_NO_SAMPLER=1:
a shuffled DataLoader and no data position registered (warned); PLAIN_TEST_NO_SAMPLES=1:
`lz.step()` without `samples=` (warned); PLAIN_TEST_SCALER=1: a CPU `GradScaler`, registered,
whose scale grows every 2 steps from near fp32's limit until gradients overflow and it backs
off (each step's scale and growth tracker are logged with its losses); PLAIN_TEST_FREEZE=1:
the first layer frozen (requires_grad=False, the optimizer over the rest), PLAIN_TEST_PERTURB=1
with it: one of its weights nudged (another base).
"""

from __future__ import annotations

import json
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lazarus_trainer import Lazarus, ResumableSampler, leave

ACCUM, B = 3, 4


def mask_collate(rows: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, ...]:
    """Zero 15% of the inputs, drawn from the global RNG at fetch time."""
    x = torch.stack([r[0] for r in rows])
    y = torch.stack([r[1] for r in rows])
    return x.masked_fill(torch.rand(x.shape) < 0.15, 0.0), y


def main() -> None:
    log_path, steps, sigterm_at, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    workers = int(os.environ.get("PLAIN_TEST_WORKERS", "0"))
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1)
    data = TensorDataset(torch.randn(40, 8, generator=g), torch.randn(40, 1, generator=g))
    first = nn.Linear(8, 16)
    model = nn.Sequential(first, nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 1))
    if os.environ.get("PLAIN_TEST_FREEZE") == "1":
        first.requires_grad_(False)
        if os.environ.get("PLAIN_TEST_PERTURB") == "1":
            with torch.no_grad():
                first.weight[0, 0] += 1e-3
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    registered = os.environ.get("PLAIN_TEST_NO_SAMPLER") != "1"
    per_step = 0 if os.environ.get("PLAIN_TEST_NO_SAMPLES") == "1" else B * ACCUM
    scaler = torch.amp.GradScaler(
        "cpu",
        growth_interval=2,
        enabled=os.environ.get("PLAIN_TEST_SCALER") == "1",
    )
    sampler = ResumableSampler(len(data), seed=0)
    lz = Lazarus().register(
        model=model,
        optimizer=opt,
        sampler=sampler if registered else None,
        scaler=scaler if scaler.is_enabled() else None,
    )
    lz.resume()

    def batches() -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        while True:
            sampler.set_epoch(lz.epoch)
            loader = DataLoader(
                data,
                batch_size=B,
                sampler=sampler if registered else None,
                shuffle=not registered,
                collate_fn=mask_collate,
                num_workers=workers,
            )
            yield from loader
            lz.set_epoch(lz.epoch + 1)

    stream = batches()
    with Path(log_path).open("a") as log:
        while lz.step_count < steps and not lz.should_stop:
            micro = []
            for _ in range(ACCUM):
                x, y = next(stream)
                with torch.autocast("cpu", torch.float16, enabled=scaler.is_enabled()):
                    loss = nn.functional.mse_loss(model(x), y)
                torch.autograd.backward(scaler.scale(loss / ACCUM))
                micro.append(float(loss.item()).hex())
            scaler.step(opt)
            scaler.update()
            opt.zero_grad()
            if scaler.is_enabled():
                micro.append(f"scale={scaler.get_scale().hex()}/{scaler._get_growth_tracker()}")
            step = lz.step_count + 1
            log.write(json.dumps({"step": step, "loss": ",".join(micro)}) + "\n")
            log.flush()
            if step == sigterm_at:
                os.kill(os.getpid(), signal.SIGTERM)
            lz.step(samples=per_step)
    code = lz.close()
    torch.save(model.state_dict(), out)
    leave(code)


if __name__ == "__main__":
    main()
