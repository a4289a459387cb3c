"""One replica group of a fault-tolerant job (docs/fault-tolerance.md): a small model on
data whose sample ids it logs, one JSON line per committed step.

argv: out_dir max_steps step_sleep. The lighthouse and group come from LAZARUS_FT_*.
Every read of the checkpoint store is logged too (`store-read`), so a test can assert a
replacement took its state from a peer, not from a checkpoint.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lazarus_trainer import Lazarus, LazarusConfig, leave
from lazarus_trainer import storage as st
from lazarus_trainer.ft_sampler import ReplicaGroupSampler

READS = (
    "committed",
    "listing",
    "resolve",
    "read_manifest",
    "read_bytes",
    "read_buffer",
    "download",
)


class ReadLog:
    """The real store, each read call written to `log` first (then made as usual)."""

    def __init__(self, storage: Any, log: Any) -> None:
        self._storage, self._log = storage, log

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._storage, name)
        if name in READS and callable(attr):

            def logged(*a: Any, **k: Any) -> Any:
                self._log(name)
                return attr(*a, **k)

            return logged
        return attr


def main() -> None:
    out, max_steps, pause = Path(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
    torch.manual_seed(0)
    n, batch = 16384, 8  # more than a run takes: one epoch
    x, w = torch.randn(n, 8), torch.randn(8, 1)
    y = x @ w + 0.1 * torch.randn(n, 1)  # learnable: the loss curve means something
    model = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Dropout(0.1), nn.Linear(32, 1))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / 100))
    sampler = ReplicaGroupSampler(n, batch, seed=0)
    cfg = LazarusConfig.from_env()
    job = st.JobIdentity(cfg.job_name, cfg.job_namespace, cfg.job_uid)
    reads: list[str] = []
    store = ReadLog(st.open_storage(cfg.checkpoint_uri, cfg.attempt, job), reads.append)
    lz = Lazarus(cfg, storage=store)  # type: ignore[arg-type]
    ft = lz.ft  # None without LAZARUS_FT_LIGHTHOUSE: the same loop, plain (a baseline)
    group = ft.settings.group if ft is not None else 0
    steps = (out / f"steps-{group}.jsonl").open("a")

    def emit(**row: Any) -> None:
        steps.write(json.dumps({"t": time.time(), "pid": os.getpid(), **row}) + "\n")
        steps.flush()

    lz.register(model=model, optimizer=opt, scheduler=sched, sampler=sampler)
    lz.resume()
    emit(event="start", step=lz.step_count, store_reads=list(reads), resumed=lz.run.resumed_from)
    ddp, ftopt = (ft.wrap_model(model), ft.wrap_optimizer(opt)) if ft else (model, opt)
    while lz.step_count < max_steps and not lz.should_stop:
        ftopt.zero_grad()
        idx = sampler.next_batch()
        loss: torch.Tensor = nn.functional.mse_loss(ddp(x[idx]), y[idx])
        torch.autograd.backward(loss)
        if ftopt.step() if ft else opt.step() or True:
            sched.step()
        before = lz.step_count
        lz.step()
        if lz.step_count > before:
            n = ft.manager.num_participants() if ft else 1
            ids = idx if sampler.participating else []
            emit(event="step", step=lz.step_count, ids=ids, loss=loss.item(), n=n)
        time.sleep(pause)
    code = lz.close()
    state = {"model": model.state_dict(), "optimizer": opt.state_dict()}
    torch.save(state, out / f"final-{group}.pt")
    healed = (ft.healed_at, ft.heal_seconds) if ft else (None, None)
    with torch.no_grad():
        eval_loss = nn.functional.mse_loss(model.eval()(x), y).item()  # the whole data set
    emit(
        event="end",
        step=lz.step_count,
        code=code,
        healed_at=healed[0],
        heal_seconds=healed[1],
        store_reads=reads,
        eval_loss=eval_loss,
    )
    leave(code)


if __name__ == "__main__":
    main()
