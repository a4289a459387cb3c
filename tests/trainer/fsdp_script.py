"""A plain loop with an FSDP2 (`fully_shard`) model on CPU (gloo), run by torchrun in tests.

argv: loss log (rank 0), steps, SIGTERM step (0: none; sent to the last rank), final weights.
Env: FSDP_TEST_EVAL_EVERY (evaluate every N steps, `eval_follows`/`report_eval`; the full
weights at each evaluation go to FINAL.stepN), FSDP_TEST_LOAD_BEST=1 (`lz.load_best()` after
training; the weights it loaded go to FINAL.best).
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import fully_shard
from torch.utils.data import DataLoader, TensorDataset

from lazarus_trainer import Lazarus, ResumableSampler, leave

BATCH = 4


def _full(model: nn.Module) -> dict[str, Any]:
    options = StateDictOptions(full_state_dict=True, cpu_offload=True)
    return get_model_state_dict(model, options=options)


def main() -> None:
    log_path, steps, sigterm_at, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    mesh = init_device_mesh("cpu", (world,))
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Dropout(0.2), nn.Linear(32, 1))
    for layer in (model[0], model[3]):
        fully_shard(layer, mesh=mesh)
    fully_shard(model, mesh=mesh)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / 5))
    g = torch.Generator().manual_seed(1)
    data = TensorDataset(torch.randn(48, 8, generator=g), torch.randn(48, 1, generator=g))
    eval_x, eval_y = torch.randn(16, 8, generator=g), torch.randn(16, 1, generator=g)
    eval_every = int(os.environ.get("FSDP_TEST_EVAL_EVERY", "0"))
    sampler = ResumableSampler(len(data), seed=0, rank=rank, world_size=world)
    lz = Lazarus().register(model=model, optimizer=optimizer, scheduler=scheduler, sampler=sampler)
    lz.resume()
    with Path(log_path).open("a") as log:
        while lz.step_count < steps and not lz.should_stop:
            sampler.set_epoch(lz.epoch)
            loader = DataLoader(
                data, batch_size=BATCH, sampler=sampler, drop_last=True, generator=torch.Generator()
            )
            for x, y in loader:
                model.train()
                loss = nn.functional.mse_loss(model(x), y)
                torch.autograd.backward(loss)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad()
                step = lz.step_count + 1
                if rank == 0:
                    log.write(json.dumps({"step": step, "loss": float(loss.item()).hex()}) + "\n")
                    log.flush()
                if step == sigterm_at and rank == world - 1:
                    os.kill(os.getpid(), signal.SIGTERM)
                evaluating = eval_every > 0 and step % eval_every == 0
                lz.step(samples=BATCH * world, eval_follows=evaluating)
                if evaluating:
                    model.eval()
                    with torch.no_grad():
                        ev = float(nn.functional.mse_loss(model(eval_x), eval_y))
                    weights = _full(model)  # a collective: every rank
                    if rank == 0:
                        log.write(json.dumps({"step": step, "eval_loss": ev}) + "\n")
                        log.flush()
                        torch.save(weights, f"{out}.step{step}")
                    lz.report_eval({"eval_loss": ev})
                if lz.should_stop or lz.step_count >= steps:
                    break
            else:
                lz.set_epoch(lz.epoch + 1)
    code = lz.close()
    full = _full(model)
    if rank == 0 and code == 0:
        torch.save(full, out)
    if os.environ.get("FSDP_TEST_LOAD_BEST") == "1" and code == 0:
        lz.load_best()  # from the best evaluation's DCP checkpoint, on every rank
        best = _full(model)
        if rank == 0:
            torch.save(best, f"{out}.best")
    dist.destroy_process_group()
    leave(code)


if __name__ == "__main__":
    main()
