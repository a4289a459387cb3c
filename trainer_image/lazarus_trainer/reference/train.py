"""The reference trainer: a small causal LM trained with Accelerate under Lazarus.

One command, CPU or GPU, one process or `torchrun --nproc-per-node N`:

    LAZARUS_CHECKPOINT_URI=/tmp/ckpt lazarus-train --steps 200 --save-every-steps 50
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from lazarus_contract.ft import ENV_FT_LIGHTHOUSE
from lazarus_store import redact

from ..api import Lazarus
from ..config import LazarusConfig
from ..data import ResumableSampler
from ..rng import seed_all
from ..termination import PermanentError, Termination, leave, write_termination
from .data import CharDataset, generate_text
from .model import TinyGPT

log = logging.getLogger("lazarus.train")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="lazarus-train", description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--batch-size", type=int, default=8, help="per process")
    p.add_argument("--seq-len", type=int, default=32)
    p.add_argument("--d-model", type=int, default=64)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--dropout", type=float, default=0.1)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--sentences", type=int, default=400, help="size of the generated corpus")
    p.add_argument("--eval-every", type=int, default=0)
    p.add_argument("--save-every-steps", type=int, default=None)
    p.add_argument("--save-every-seconds", type=float, default=None)
    p.add_argument("--eval-metric", default=None)
    p.add_argument("--keep-latest", type=int, default=None)
    p.add_argument("--keep-best", type=int, default=None)
    p.add_argument("--sync-save", action="store_true", help="save synchronously")
    p.add_argument("--loss-log", type=Path, help="JSONL of per-step loss (rank 0)")
    p.add_argument("--final-params", type=Path, help="torch.save the final weights here")
    p.add_argument(
        "--dump-state",
        type=Path,
        help="rank 0 saves model+optimizer state to PREFIX-resumed.pt after resume and "
        "PREFIX-end.pt at the end (tests)",
    )
    p.add_argument("--step-sleep", type=float, default=0.0, help="slow each step (tests)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument(
        "--sigterm-at-step",
        type=int,
        default=int(os.environ.get("LAZARUS_TEST_SIGTERM_AT_STEP", "0") or 0),
        help="send SIGTERM to this process after this step (tests)",
    )
    p.add_argument(
        "--sigterm-rank",
        type=int,
        default=int(os.environ.get("LAZARUS_TEST_SIGTERM_RANK", "0") or 0),
    )
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    redact.install()
    # When the process is ready to work: the interpreter and the imports are done.
    log.info("lazarus-train ready (pid %d): imports done", os.getpid())
    args = parse_args(argv)
    try:
        code = train(args)
    except PermanentError as exc:
        log.error("permanent error: %s", exc)
        term = Termination("permanent-error", -1, None, str(exc))
        write_termination(term)
        code = term.exit_code
    except Exception:
        log.exception("training failed")
        code = 1
    leave(code)


@dataclass
class Run:
    """What one training run is made of, built in an order that keeps every RNG draw fixed."""

    accelerator: Any
    model: torch.nn.Module
    optimizer: Any
    scheduler: Any
    sampler: ResumableSampler
    train_set: CharDataset
    eval_set: CharDataset
    lz: Lazarus


def train(args: argparse.Namespace) -> int:
    if os.environ.get(ENV_FT_LIGHTHOUSE, "").strip():
        from .ft_loop import train_ft  # replica groups (docs/fault-tolerance.md)

        return train_ft(args)
    run = build(args)
    lz, rank = run.lz, run.accelerator.process_index
    lz.resume()
    if args.dump_state and rank == 0:
        dump_state(lz, Path(f"{args.dump_state}-resumed.pt"))
    loss_log = args.loss_log.open("a") if args.loss_log and rank == 0 else None
    while lz.step_count < args.steps and not lz.should_stop:
        run.sampler.set_epoch(lz.epoch)
        # Its own generator: a DataLoader iterator otherwise draws a seed from the global RNG
        # when created, and a resumed run creates one at a different point.
        loader = DataLoader(
            run.train_set,
            batch_size=args.batch_size,
            sampler=run.sampler,
            drop_last=True,
            generator=torch.Generator(),
        )
        # An empty epoch is used up: the next one starts at offset 0.
        if len(loader) == 0 or not train_epoch(args, run, loader, loss_log):
            lz.set_epoch(lz.epoch + 1)
            run.sampler.set_epoch(lz.epoch)
    if loss_log is not None:
        loss_log.close()
    code = lz.close()
    if args.dump_state and rank == 0:
        dump_state(lz, Path(f"{args.dump_state}-end.pt"))
    if code == 0 and args.final_params and rank == 0:
        torch.save(run.accelerator.unwrap_model(run.model).state_dict(), args.final_params)
    run.accelerator.end_training()
    return code


def build(args: argparse.Namespace) -> Run:
    from accelerate import Accelerator

    from ..adapters.accelerate import from_accelerator

    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True)
    accelerator = Accelerator(cpu=not torch.cuda.is_available())
    rank, world = accelerator.process_index, accelerator.num_processes
    config = config_of(args)

    train_set, eval_set, model, optimizer, scheduler = model_and_data(args)
    model, optimizer = accelerator.prepare(model, optimizer)
    sampler = ResumableSampler(len(train_set), seed=args.seed, rank=rank, world_size=world)
    lz = from_accelerator(
        accelerator,
        model=model,
        optimizer=optimizer,
        scheduler=scheduler,
        sampler=sampler,
        config=config,
    )
    seed_all(args.seed + 1000 * (rank + 1))  # per-rank dropout streams
    return Run(accelerator, model, optimizer, scheduler, sampler, train_set, eval_set, lz)


def config_of(args: argparse.Namespace) -> LazarusConfig:
    return LazarusConfig.from_env(
        save_every_steps=args.save_every_steps,
        save_every_seconds=args.save_every_seconds,
        eval_metric=args.eval_metric,
        keep_latest=args.keep_latest,
        keep_best=args.keep_best,
        async_save=not args.sync_save,
    )


def model_and_data(args: argparse.Namespace) -> tuple[CharDataset, CharDataset, Any, Any, Any]:
    """The data, model, optimizer and scheduler, seeded: the same on every rank and group."""
    seed_all(args.seed)  # same initial weights on every rank
    text = generate_text(args.sentences, seed=args.seed + 1)
    train_set = CharDataset(text, args.seq_len)
    eval_set = CharDataset(generate_text(40, seed=args.seed + 2), args.seq_len, train_set.vocab)
    model = TinyGPT(
        len(train_set.vocab),
        d_model=args.d_model,
        n_layers=args.layers,
        n_heads=args.heads,
        max_len=args.seq_len,
        dropout=args.dropout,
    )
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01)
    # Not passed to prepare(): Accelerate would step it once per process per step.
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min(1.0, (s + 1) / 20) * max(0.1, 1 - s / max(1, args.steps))
    )
    return train_set, eval_set, model, optimizer, scheduler


def train_epoch(args: argparse.Namespace, run: Run, loader: DataLoader[Any], loss_log: Any) -> bool:
    """The rest of this epoch; True if it ended early (a stop, or the last step)."""
    lz = run.lz
    for x, y in loader:
        train_step(args, run, x, y, loss_log)
        if lz.should_stop or lz.step_count >= args.steps:
            return True
    return False


def train_step(
    args: argparse.Namespace, run: Run, x: torch.Tensor, y: torch.Tensor, loss_log: Any
) -> None:
    lz, device = run.lz, run.accelerator.device
    rank, world = run.accelerator.process_index, run.accelerator.num_processes
    run.model.train()
    logits = run.model(x.to(device))
    loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), y.to(device).flatten())
    run.optimizer.zero_grad(set_to_none=True)
    run.accelerator.backward(loss)
    run.optimizer.step()
    run.scheduler.step()
    step = lz.step_count + 1
    if loss_log is not None:
        loss_log.write(json.dumps({"step": step, "loss": float(loss.item()).hex()}) + "\n")
        loss_log.flush()
    if step == args.sigterm_at_step and rank == args.sigterm_rank:
        os.kill(os.getpid(), signal.SIGTERM)
    eval_now = bool(args.eval_every) and step % args.eval_every == 0
    global_batch = args.batch_size * world
    lz.step(
        samples=global_batch,
        tokens=global_batch * args.seq_len,
        metrics={"loss": loss.item()},
        eval_follows=eval_now,
    )
    if eval_now and not lz.should_stop:
        eval_loss = evaluate(run.model, run.eval_set, device)
        if loss_log is not None:
            loss_log.write(json.dumps({"step": step, "eval_loss": eval_loss}) + "\n")
        lz.report_eval({"eval_loss": eval_loss})
    if args.step_sleep:
        time.sleep(args.step_sleep)


def dump_state(lz: Lazarus, path: Path) -> None:
    reg = lz.registry
    torch.save(
        {
            "step": lz.step_count,
            "model": reg.models["model"].state_dict(),
            "optimizer": reg.optimizers["optimizer"].state_dict(),
        },
        path,
    )


@torch.no_grad()
def evaluate(model: torch.nn.Module, data: CharDataset, device: torch.device) -> float:
    model.eval()
    logits = model(data.x.to(device))
    loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), data.y.to(device).flatten())
    return float(loss.item())
