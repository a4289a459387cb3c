"""A tiny DeepSpeed ZeRO training loop with Lazarus (run under torchrun by tests).

`python -m torch.distributed.run --nproc-per-node 2 ds_script.py --stage 2 --steps 12`;
dropout is on, so only a resume that restores every rank's RNG is exact. `--dump PREFIX`
writes rank 0's PREFIX-end.pt: every parameter's full fp32 weights and Adam moments.
`--accum N`: N micro-batches an optimizer step, `lz.step()` after the engine.step() of each
boundary (as `engine.is_gradient_accumulation_boundary()` said before it); `--lz-step
every-micro` calls it after every micro-batch's engine.step() instead, `before-engine-step`
between engine.backward() and engine.step() (both refused).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import time
from pathlib import Path
from typing import Any

import deepspeed
import torch
from deepspeed.utils import safe_get_full_fp32_param, safe_get_full_optimizer_state
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lazarus_contract import ANNOTATION_CHECKPOINT_NOW, ENV_ANNOTATIONS_FILE
from lazarus_trainer import PermanentError, ResumableSampler, leave
from lazarus_trainer.adapters.deepspeed import from_deepspeed
from lazarus_trainer.termination import Termination, write_termination

BATCH = 2  # per rank
EVAL_EVERY = 4


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    p.add_argument("--stage", type=int, default=2)
    p.add_argument("--steps", type=int, default=12)
    p.add_argument("--loss-log", type=Path)
    p.add_argument("--dump", type=Path)
    p.add_argument("--accum", type=int, default=1, help="gradient_accumulation_steps")
    p.add_argument(
        "--lz-step", choices=["boundary", "every-micro", "before-engine-step"], default="boundary"
    )
    p.add_argument("--sigterm-at", type=int, default=0, help="SIGTERM this rank after this step")
    p.add_argument("--sigterm-rank", type=int, default=0)
    p.add_argument("--request-at", type=int, default=0, help="ask for checkpoint-now after it")
    return p.parse_args(argv)


def dump(engine: Any, path: Path | None) -> None:
    """Full fp32 weights and Adam moments (collectives under ZeRO-3: every rank calls)."""
    out: dict[str, torch.Tensor] = {}
    for name, param in engine.module.named_parameters():
        out[f"{name}.fp32"] = safe_get_full_fp32_param(param).clone()
        for key in ("exp_avg", "exp_avg_sq"):
            out[f"{name}.{key}"] = safe_get_full_optimizer_state(param, key).clone()
    if path is not None and engine.global_rank == 0:
        torch.save(out, f"{path}-end.pt")


def request_checkpoint(step: int) -> None:
    """Set the checkpoint-now annotation as kubelet does (a new file swapped into place),
    then wait out the watcher's once-a-second reading so this step's boundary sees it."""
    path = Path(os.environ[ENV_ANNOTATIONS_FILE])
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(f'{ANNOTATION_CHECKPOINT_NOW}="after-step-{step}"\n')
    tmp.replace(path)
    time.sleep(1.1)


def train(args: argparse.Namespace) -> int:
    deepspeed.init_distributed(dist_backend="gloo")
    torch.manual_seed(0)
    torch.use_deterministic_algorithms(True)
    data = TensorDataset(torch.randn(64, 16), torch.randn(64, 8))
    model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Dropout(0.3), nn.Linear(32, 8))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=3, gamma=0.7)
    config = {
        "train_micro_batch_size_per_gpu": BATCH,
        "gradient_accumulation_steps": args.accum,
        "zero_optimization": {"stage": args.stage},
        "steps_per_print": 10**9,
    }
    engine, _, _, _ = deepspeed.initialize(
        model=model, optimizer=optimizer, lr_scheduler=scheduler, config=config
    )
    rank, world = engine.global_rank, engine.world_size
    sampler = ResumableSampler(len(data), seed=0, rank=rank, world_size=world)
    lz = from_deepspeed(engine, sampler=sampler)
    lz.resume()
    log = args.loss_log.open("a") if args.loss_log and rank == 0 else None
    micro: list[str] = []  # this optimizer step's micro-batch losses
    eval_x = torch.randn(8, 16, generator=torch.Generator().manual_seed(1))
    eval_y = torch.zeros(8, 8)
    while lz.step_count < args.steps and not lz.should_stop:
        sampler.set_epoch(lz.epoch)
        loader = DataLoader(
            data, batch_size=BATCH, sampler=sampler, drop_last=True, generator=torch.Generator()
        )
        for x, y in loader:
            loss = nn.functional.mse_loss(engine(x), y)
            engine.backward(loss)
            boundary = engine.is_gradient_accumulation_boundary()
            if args.lz_step != "before-engine-step":
                engine.step()
            micro.append(float(loss.item()).hex())
            if not boundary and args.lz_step == "boundary":
                continue
            step = lz.step_count + 1
            if log is not None:
                log.write(json.dumps({"step": step, "loss": ",".join(micro)}) + "\n")
                log.flush()
            micro = []
            if step == args.sigterm_at and rank == args.sigterm_rank:
                os.kill(os.getpid(), signal.SIGTERM)
            if step == args.request_at and rank == 0:
                request_checkpoint(step)
            evaluating = step % EVAL_EVERY == 0
            lz.step(samples=BATCH * args.accum * world, eval_follows=evaluating)
            if args.lz_step == "before-engine-step":
                engine.step()
            if evaluating and not lz.should_stop:
                engine.eval()
                with torch.no_grad():
                    ev = nn.functional.mse_loss(engine(eval_x), eval_y).item()
                engine.train()
                lz.report_eval({"eval_loss": ev})
            if lz.should_stop or lz.step_count >= args.steps:
                break
        else:
            lz.set_epoch(lz.epoch + 1)
    dump(engine, args.dump)
    return lz.close()


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        code = train(parse())
    except PermanentError as exc:
        logging.getLogger("lazarus").error("permanent error: %s", exc)
        term = Termination("permanent-error", -1, None, str(exc))
        write_termination(term)
        code = term.exit_code
    # The group's threads finish with it; `leave` skips the teardown they once raced here
    # (SIGABRT at exit, ~1 run in 10).
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
    leave(code)


if __name__ == "__main__":
    main()
