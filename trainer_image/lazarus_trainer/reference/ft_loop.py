"""`lazarus-train` as one replica group of a fault-tolerant job (docs/fault-tolerance.md).

On when the operator sets LAZARUS_FT_LIGHTHOUSE (spec.faultTolerance). The same model,
data, optimizer and schedule as the Accelerate path (train.py), in the loop of
tests/trainer/ft_script.py: the model and optimizer wrapped by torchft (`lz.ft`), each
step's data from a `ReplicaGroupSampler` (the job's one order, shared out over the step's
quorum), only committed steps counted, logged and scheduled; one group writes the
checkpoints. Without Accelerate: a group is one process here, and what this loop cannot
do the same way (several processes per group, Accelerate's mixed precision, DeepSpeed,
FSDP, a GPU with torchft's gloo process group) is refused with one line (exit 78), never
trained differently.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..api import Lazarus
from ..ft_sampler import ReplicaGroupSampler
from ..termination import PermanentError
from .data import CharDataset
from .train import config_of, dump_state, evaluate, model_and_data

MODE = "the fault-tolerant mode of lazarus-train (spec.faultTolerance)"


def unsupported(env: Mapping[str, str], cuda: bool) -> str | None:
    """Why this process cannot run as a replica group of lazarus-train (None: it can)."""
    world = env.get("WORLD_SIZE", "1").strip() or "1"
    if world != "1":
        return (
            f"{MODE} runs one process per replica group; WORLD_SIZE={world} "
            "(processesPerPod > 1 under torchrun) is not supported"
        )
    precision = env.get("ACCELERATE_MIXED_PRECISION", "no").strip().lower() or "no"
    if precision != "no":
        return f"{MODE} trains in float32; ACCELERATE_MIXED_PRECISION={precision} is not supported"
    for name in ("ACCELERATE_USE_DEEPSPEED", "ACCELERATE_USE_FSDP"):
        if env.get(name, "").strip().lower() in ("1", "true", "yes"):
            return f"{MODE} does not run under Accelerate; {name} is not supported"
    if cuda:
        return (
            f"{MODE} runs on CPU (torchft's gloo process group; GPUs are untested): "
            "a GPU is visible; set CUDA_VISIBLE_DEVICES= to train on CPU"
        )
    return None


def train_ft(args: argparse.Namespace) -> int:
    why = unsupported(os.environ, torch.cuda.is_available())
    if why is not None:
        raise PermanentError(why)
    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True)
    config = config_of(args)
    train_set, eval_set, model, optimizer, scheduler = model_and_data(args)
    sampler = ReplicaGroupSampler(len(train_set), args.batch_size, seed=args.seed)
    lz = Lazarus(config).register(
        model=model, optimizer=optimizer, scheduler=scheduler, sampler=sampler
    )
    ft = lz.ft
    assert ft is not None  # LAZARUS_FT_LIGHTHOUSE is set: train.py comes here only then
    lz.resume()  # a replacement reads nothing: its first quorum heals it from a peer
    if args.dump_state:
        dump_state(lz, Path(f"{args.dump_state}-resumed.pt"))
    ddp, ftopt = ft.wrap_model(model), ft.wrap_optimizer(optimizer)
    loss_log = args.loss_log.open("a") if args.loss_log else None
    group = Group(args, lz, sampler, model, eval_set, loss_log)
    while lz.step_count < args.steps and not lz.should_stop:
        model.train()
        ftopt.zero_grad(set_to_none=True)  # joins this step's quorum
        idx = sampler.next_batch()  # this group's share of the step's samples
        x, y = train_set.x[idx], train_set.y[idx]
        loss = torch.nn.functional.cross_entropy(ddp(x).flatten(0, 1), y.flatten())
        torch.autograd.backward(loss)  # gradients averaged over the quorum
        committed = bool(ftopt.step())
        if committed:
            scheduler.step()
        group.after_step(loss, committed)
        if args.step_sleep:
            time.sleep(args.step_sleep)
    if loss_log is not None:
        loss_log.close()
    code = lz.close()
    if args.dump_state:
        dump_state(lz, Path(f"{args.dump_state}-end.pt"))
    if code == 0 and args.final_params:
        torch.save(model.state_dict(), args.final_params)
    return code


@dataclass
class Group:
    """What a step's boundary touches."""

    args: argparse.Namespace
    lz: Lazarus
    sampler: ReplicaGroupSampler
    model: torch.nn.Module
    eval_set: CharDataset
    loss_log: Any

    def after_step(self, loss: torch.Tensor, committed: bool) -> None:
        """A committed step is logged and counted (with its evaluation); one that did not
        commit only lets `lz.step()` act on a signal."""
        args, lz, loss_log = self.args, self.lz, self.loss_log
        step = lz.step_count + 1
        eval_now = committed and bool(args.eval_every) and step % args.eval_every == 0
        if committed:
            if loss_log is not None:
                n = lz.ft.participation()[1] if lz.ft is not None else 1
                row = {"step": step, "loss": float(loss.item()).hex(), "groups": n}
                loss_log.write(json.dumps(row) + "\n")
                loss_log.flush()
            if step == args.sigterm_at_step and args.sigterm_rank == 0:
                os.kill(os.getpid(), signal.SIGTERM)
        samples = self.sampler.committed_samples()
        lz.step(
            tokens=samples * args.seq_len if committed else 0,
            metrics={"loss": loss.item()} if committed else None,
            eval_follows=eval_now,
        )
        if eval_now and not lz.should_stop:
            eval_loss = evaluate(self.model, self.eval_set, torch.device("cpu"))
            if loss_log is not None:
                loss_log.write(json.dumps({"step": step, "eval_loss": eval_loss}) + "\n")
            lz.report_eval({"eval_loss": eval_loss})
