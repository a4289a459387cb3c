"""Lazarus for scripts built on Hugging Face `Trainer` (ms-swift, LMFlow, Align-Anything style).

    trainer = Trainer(...)
    lazarus = LazarusCallback(trainer)                    # 1: adds itself as a callback
    trainer.train(resume_from_checkpoint=lazarus.resume_checkpoint())   # 2: the resume argument

Saves go through Lazarus (async, checksummed, committed, on eval improvement, on request,
on SIGTERM). To resume, the Lazarus checkpoint is verified and laid out as an ordinary HF
checkpoint directory, so HF's own resume logic restores the rest exactly as it would.
"""

from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ..api import Lazarus
from ..base_fingerprint import KEY as BASE_KEY
from ..base_fingerprint import FrozenBase
from ..config import LazarusConfig
from ..rng import numpy_state, restore_rng
from ..state import common_object, deserialize, rank_object
from ..storage import CheckpointNotFound, InvalidCheckpoint
from ..termination import PermanentError, exits_permanent
from .hf_checks import check_hf_state
from .hf_eval import epoch_eval_follows, eval_parts, hf_missing
from .hf_fetch import KEY as FETCH_KEY
from .hf_fetch import FetchTap, tappable
from .hf_peft import TrainableView, full_state
from .hf_state import (
    hf_metric_config,
    refuse_past_first_pass,
    refuse_unsupported,
    restore_callback_states,
    trainer_state_json,
    warn_inexact,
)

if TYPE_CHECKING:
    # transformers is untyped here (follow_imports=skip): the callback protocol this
    # adapter implements is its own methods.
    class TrainerCallback:
        pass
else:
    from transformers import TrainerCallback

log = logging.getLogger(__name__)

# File names HF's Trainer looks for in a checkpoint directory.
HF_WEIGHTS = "pytorch_model.bin"
HF_OPTIMIZER = "optimizer.pt"
HF_SCHEDULER = "scheduler.pt"
HF_TRAINER_STATE = "trainer_state.json"
HF_SCALER = "scaler.pt"


class _TrainerStateHolder:
    """HF's TrainerState as a Lazarus extra: saved as the JSON HF's own save would write."""

    def __init__(self, trainer: Any) -> None:
        self.trainer = trainer
        self.state: Any = None
        # While set: the log_history entries saved (a stop's evaluation is reported after
        # HF logged its end-of-training summary, which an uninterrupted run has not).
        self.log_len: int | None = None
        # While set: the results of the evaluation being reported, before HF records its
        # best metric from them (a save then carries the best HF's save would).
        self.evaluated: dict[str, Any] | None = None

    def state_dict(self) -> dict[str, Any]:
        if self.state is None:
            return {"json": None}
        return {"json": trainer_state_json(self.trainer, self.state, self.evaluated, self.log_len)}

    def load_state_dict(self, state: dict[str, Any], /) -> None:
        pass  # HF reloads trainer_state.json itself from the materialized directory


class LazarusCallback(TrainerCallback):
    """Saves, stops and resumes an HF `Trainer` through Lazarus.

    `load_best=True` loads the best evaluation's checkpoint weights into the model when
    training completes (HF's `load_best_model_at_end`, which needs HF's own saving)."""

    @exits_permanent
    def __init__(
        self, trainer: Any, config: LazarusConfig | None = None, *, load_best: bool = False
    ) -> None:
        self.trainer = trainer
        refuse_unsupported(trainer)
        # Before any resume loads into it: the frozen base (a PEFT model's) as set up.
        self._base = FrozenBase()
        self._base.add("model", trainer.model)
        self._view: TrainableView | None = None
        # HF's own load_best_model_at_end loads from HF's local checkpoints, which a resumed
        # pod does not have: Lazarus loads the best one it kept instead.
        self._load_best = load_best or bool(getattr(trainer.args, "load_best_model_at_end", False))
        config = hf_metric_config(config or LazarusConfig.from_env(), trainer.args, self._load_best)
        self.lz = Lazarus(config)
        self._pending_eval: dict[str, float] | None = None  # metrics a stop waits to report
        self._round: dict[str, Any] = {}  # this evaluation's results so far (eval datasets)
        self._round_parts = 0
        # Resume lays out a full HF checkpoint directory from trainer/common.pt, so the model
        # and optimizer stay there (replicated) rather than in DCP shards.
        self.lz.sharded = False
        self._holder = _TrainerStateHolder(trainer)
        self._fetch = FetchTap()
        self._fetch_saved: dict[str, Any] | None = None  # a resumed checkpoint's, to arm
        self._resumed_callbacks: dict[str, Any] | None = None
        self.exit_code: int | None = None
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        trainer.add_callback(self)
        # HF's documented hook for the loader of a resumed epoch: tapped like the first.
        resumed_loader = trainer.get_resumed_dataloader

        def get_resumed_dataloader(dataloader: Any, num_batches: int) -> Any:
            loader = resumed_loader(dataloader, num_batches)
            return self._fetch.tap(loader) if tappable(loader) else loader

        trainer.get_resumed_dataloader = get_resumed_dataloader

    # --- resume ------------------------------------------------------------------------
    @exits_permanent
    def resume_checkpoint(self) -> str | None:
        """A local HF checkpoint directory built from the Lazarus checkpoint to resume, or None."""
        lz, built = self.lz, []

        def load(name: str) -> bool:
            common: dict[str, Any] = {}
            rank: dict[str, Any] = {}
            error = None
            try:
                fmt = lz.resumer.check_manifest(name, explicit=False).extra.format
                ours, mine = common_object(fmt), rank_object(lz.dist.rank, fmt)
                common = deserialize(lz.storage.read_bytes(name, ours), ours, fmt)
                check_hf_state(common, ours)  # HF reads it itself, past the fall-back
                saved_base = common["extras"].get(BASE_KEY)
                why = self._base.check_state(saved_base) if saved_base is not None else None
                if why:
                    raise InvalidCheckpoint(f"{ours}: extra {BASE_KEY!r} state {why}")
                rank = deserialize(lz.storage.read_bytes(name, mine), mine, fmt)
            except (InvalidCheckpoint, CheckpointNotFound) as exc:
                error = str(exc)
            # Every rank resumes the same checkpoint: one rank's bad file rules it out for all.
            if not lz.resumer.agree(name, error):
                return False
            built.append(self._materialize(name, common, rank))
            return True

        return built[0] if lz.resumer.resume(load) else None

    def _materialize(self, name: str, common: dict[str, Any], rank: dict[str, Any]) -> str:
        self._tmp = tempfile.TemporaryDirectory(prefix=f"lazarus-{name}-")
        d = Path(self._tmp.name)
        trainer_state = common["extras"]["hf_trainer_state"]["json"]
        refuse_past_first_pass(self.trainer, json.loads(trainer_state))
        vouched = set(self._base.models.get("model", {}))
        torch.save(
            full_state(self.trainer.model, common["models"]["model"], vouched), d / HF_WEIGHTS
        )
        torch.save(common["optimizers"]["optimizer"], d / HF_OPTIMIZER)
        torch.save(common["schedulers"]["scheduler"], d / HF_SCHEDULER)
        if common.get("scaler") is not None:
            torch.save(common["scaler"], d / HF_SCALER)
        fetch = (rank.get("extras") or {}).get(FETCH_KEY)
        if fetch is not None:
            # Restored at the fetch it belongs to (hf_fetch.py), not where HF restores it.
            self._fetch_saved = {"fetch": fetch, "rng": rank["rng"]}
        else:
            self._write_rng(d, rank["rng"])
        (d / HF_TRAINER_STATE).write_text(trainer_state)
        progress = common["progress"]
        self.lz.progress.step = int(progress["step"])
        self.lz.progress.best_metric = progress.get("best_metric")
        self.lz.progress.best_step = progress.get("best_step")
        self.lz.progress.metrics_history = list(progress.get("metrics_history", []))
        self.lz.last_committed = (name, int(progress["step"]))
        self.lz.resumed_from = name
        log.info("resuming HF Trainer from %s (step %s) via %s", name, progress["step"], d)
        return str(d)

    def _write_rng(self, d: Path, rng: dict[str, Any]) -> None:
        # HF reads this file back itself (weights_only, numpy allowed): written from state
        # that was loaded without running code, in the tuple form np.random.set_state takes.
        hf_rng = {"python": rng["python"], "numpy": numpy_state(rng["numpy"]), "cpu": rng["torch"]}
        if "cuda" in rng:
            hf_rng["cuda"] = rng["cuda"]
        world = self.lz.dist.world_size
        rng_name = f"rng_state_{self.lz.dist.rank}.pth" if world > 1 else "rng_state.pth"
        torch.save(hf_rng, d / rng_name)

    # --- training events ---------------------------------------------------------------
    @exits_permanent
    def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        self._holder.state = state
        handler = self.trainer.callback_handler
        if self.lz.resumed_from is not None:
            restore_callback_states(self.trainer, state.stateful_callbacks)
        # Last among the callbacks (a new list: HF is iterating the old one), so that a save
        # sees every other callback's state for this step or evaluation, as HF's save does.
        handler.callbacks = [cb for cb in handler.callbacks if cb is not self] + [self]
        scaler = getattr(self.trainer.accelerator, "scaler", None)
        extras: dict[str, Any] = {"hf_trainer_state": self._holder}
        model = kw["model"]
        if self._base.models:  # checkpoints hold what trains, the base its fingerprint
            extras[BASE_KEY] = self._base
            if self._view is None:
                self._view = TrainableView(model, self._base)
            self._view.rebaseline()  # HF's resume just loaded the same base into it
            model = self._view
        self.lz.register(
            model=model,
            optimizer=kw["optimizer"],
            scheduler=kw["lr_scheduler"],
            scaler=scaler,
            extras=extras,
        )
        self.lz.registry.data_owner = "HF Trainer"  # its global_step places the data (fidelity.py)
        loader = kw.get("train_dataloader")
        tapped = loader is not None and tappable(loader)
        if tapped:
            self._fetch.tap(loader)
            self.lz.registry.rank_extras[FETCH_KEY] = self._fetch
        warn_inexact(self.trainer, loader, tapped)
        if self._fetch_saved is not None:
            if tapped:
                self._fetch.arm(self._fetch_saved["fetch"], self._fetch_saved["rng"])
            else:  # loading changed since the save (workers): the step end's state, now
                restore_rng(self._fetch_saved["rng"])
            self._fetch_saved = None
        self.lz.progress.step = state.global_step

    @exits_permanent
    def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        self._holder.state = state
        world = max(1, args.world_size)
        # The micro-batches this step trained on: fewer at an epoch's end (HF's remainder).
        micro = getattr(self.trainer, "current_gradient_accumulation_steps", None)
        micro = int(micro or args.gradient_accumulation_steps)
        samples = args.per_device_train_batch_size * micro * world
        follows = bool(control.should_evaluate) or epoch_eval_follows(args, state)
        self.lz.step(samples=samples, eval_follows=follows)
        if self.lz.stop_pending:
            # A stop at an evaluation step: HF evaluates (at once, or at the epoch's end),
            # then leaves its loop; the preemption checkpoint follows after HF's best-metric
            # update (on_epoch_end, or on_train_end for an epoch-end evaluation).
            control.should_training_stop = True
            control.should_save = False
        elif self.lz.should_stop:
            # The preemption checkpoint is committed; let HF log this step and leave its loop,
            # then on_train_end exits with the contract's code.
            control.should_training_stop = True
            control.should_evaluate = False
            control.should_save = False

    @exits_permanent
    def on_evaluate(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        # With several eval datasets (a dict) HF calls this once per dataset, each with its
        # own `eval_<name>_*` keys: one evaluation is all of them, merged, as HF's best-metric
        # check sees it.
        self._round.update(kw.get("metrics") or {})
        self._round_parts += 1
        if self._round_parts < eval_parts(self.trainer):
            return
        results, self._round, self._round_parts = self._round, {}, 0
        hf_missing(args, results)
        metrics = {k: float(v) for k, v in results.items() if isinstance(v, int | float)}
        if self.lz.stop_pending:
            self._pending_eval = metrics
            self._holder.log_len = len(state.log_history)  # the evaluation's log included
            return
        self._holder.evaluated = results  # HF records its best metric after this callback
        try:
            self.lz.report_eval(metrics)
        finally:
            self._holder.evaluated = None

    @exits_permanent
    def on_epoch_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        self._report_pending(state)
        if self.lz.should_stop:
            # Stopped (mid-epoch, or after this step's evaluation): HF's epoch-end evaluation
            # (eval_strategy="epoch") would be one an uninterrupted run does not do here.
            control.should_evaluate = False
            control.should_save = False
        elif self.lz.stop_pending:
            control.should_save = False  # the evaluation still runs: the stop waits for it

    def _report_pending(self, state: Any) -> None:
        """The evaluation a stop waited for: report it, which stops with a checkpoint."""
        if self._pending_eval is not None:
            metrics, self._pending_eval = self._pending_eval, None
            self._holder.state = state
            try:
                self.lz.report_eval(metrics)
            finally:
                self._holder.log_len = None

    @exits_permanent
    def on_train_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        self._report_pending(state)
        if self.lz.should_stop or self.lz.stop_pending:
            raise SystemExit(self.lz.close())
        self._holder.state = state
        self.exit_code = code = self.lz.close()
        if code != 0:
            # Training ran but its final state is not committed (the termination message
            # says why): a green exit would hide that nothing can be resumed.
            raise SystemExit(code)
        if self._load_best:
            self.load_best()

    @exits_permanent
    def load_best(self) -> str | None:
        """Load the best evaluation's checkpoint weights into the model (after training).
        None when no evaluation improved the metric; a best checkpoint that is gone is a
        `PermanentError` (exit 78), never the last weights passed off as the best."""
        name = self.lz.load_best()
        step = self.lz.progress.best_step
        if name is None and step is not None:
            raise PermanentError(
                f"load_best: the best checkpoint (step {step}, {self.lz.config.eval_metric}="
                f"{self.lz.progress.best_metric}) is not in the store; the model holds the "
                "last weights. Keep it with LAZARUS_KEEP_BEST>=1"
            )
        return name
