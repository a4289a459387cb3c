"""`Lazarus`: register what to save, call `step()` once per optimizer step, ask `should_stop`.

The facade users' code talks to. It turns each step boundary into agreed flags (one
all_reduce) and hands them to the parts that decide and act: `SavePolicy` (when and why),
`SavePipeline` (capture, write, commit), `Stopper` (stop signals and the end of training)
and `Resumer` (load on start). Their shared state is one `RunState`.
"""

from __future__ import annotations

import logging
import os
import time

import torch

from lazarus_contract import parse_checkpoint_name

from . import storage as st
from .base_fingerprint import note_frozen
from .config import LazarusConfig
from .distributed import Collectives
from .facade_state import RunStateAccess
from .fidelity import warn_data_setup
from .ft import FaultTolerance, FtSettings
from .progress import ProgressReport
from .requests import CheckpointRequestWatcher
from .resumer import Resumer
from .rng import capture_rng
from .run_state import Context, RunState
from .save_pipeline import SavePipeline
from .save_policy import Act, Agreed, SavePolicy, eval_improved, metric_key, stop_deadline
from .signals import StopSignal
from .state import Registry, Stateful
from .stopping import Stopper
from .termination import exits_permanent

log = logging.getLogger("lazarus")


class Lazarus(RunStateAccess):
    """Checkpoint manager for one training process (one per rank)."""

    @exits_permanent
    def __init__(
        self, config: LazarusConfig | None = None, *, storage: st.Storage | None = None
    ) -> None:
        self.config = cfg = config or LazarusConfig.from_env()
        self.dist = Collectives()
        job = st.JobIdentity(cfg.job_name, cfg.job_namespace, cfg.job_uid)
        self.storage = storage or st.open_storage(cfg.checkpoint_uri, cfg.attempt, job)
        if self.storage.attempt is not None:
            cfg.attempt = self.storage.attempt  # a filesystem root's own numbering
        self.registry = Registry()
        self.run = RunState()
        self.signal = StopSignal()
        if cfg.handle_signals:
            self.signal.install()
        self.requests = CheckpointRequestWatcher() if self.dist.is_main else None
        # Each pod's launcher rank keeps its termination file current (progress.py).
        self.progress_report = (
            ProgressReport(lambda: (self.run.progress.step, self.run.last_committed))
            if self.dist.is_local_leader
            else None
        )
        ctx = Context(cfg, self.dist, self.storage, self.registry, self.run)
        self.policy = SavePolicy(cfg, now=time.monotonic())
        self.pipeline = SavePipeline(ctx, self.policy, self._deadline)
        self.stopper = Stopper(ctx, self.signal, self.pipeline)
        self.resumer = Resumer(ctx)
        self._stop_after_eval = False  # a stop agreed at an evaluation step, not yet acted on
        self._eval_started: float | None = None
        self._metric_warned = False
        self._data_checked = False  # fidelity.py's warnings, once at the first step
        ft = FtSettings.from_env(dict(os.environ))  # replica groups (docs/fault-tolerance.md)
        self.ft = FaultTolerance(ft, self.registry, self.run, self.dist) if ft else None
        if self.ft is not None:  # the writer records its survivors' stalls with each save
            self.pipeline.facts.append(self.ft.watch.drain)

    # --- registration --------------------------------------------------------------------
    @exits_permanent
    def register(
        self,
        *,
        model: torch.nn.Module | None = None,
        optimizer: Stateful | None = None,
        scheduler: Stateful | None = None,
        scaler: Stateful | None = None,
        sampler: Stateful | None = None,
        models: dict[str, torch.nn.Module] | None = None,
        optimizers: dict[str, Stateful] | None = None,
        schedulers: dict[str, Stateful] | None = None,
        extras: dict[str, Stateful] | None = None,
    ) -> Lazarus:
        reg = self.registry
        if model is not None:
            reg.models["model"] = model
        if optimizer is not None:
            reg.optimizers["optimizer"] = optimizer
        if scheduler is not None:
            reg.schedulers["scheduler"] = scheduler
        reg.models.update(models or {})
        reg.optimizers.update(optimizers or {})
        reg.schedulers.update(schedulers or {})
        reg.extras.update(extras or {})
        reg.scaler = scaler if scaler is not None else reg.scaler
        reg.sampler = sampler if sampler is not None else reg.sampler
        attach = getattr(reg.sampler, "attach", None)
        if self.ft is not None and attach is not None:
            attach(self.ft.participation)  # ft_sampler: each step's share of the data
        note_frozen(reg)  # before resume() loads into them: the frozen base as set up
        return self

    @property
    def step_count(self) -> int:
        return self.run.progress.step

    @property
    def epoch(self) -> int:
        return self.run.progress.epoch

    def set_epoch(self, epoch: int) -> None:
        self.run.progress.epoch = epoch

    # --- the step boundary ---------------------------------------------------------------
    @exits_permanent
    def step(
        self,
        *,
        samples: int = 0,
        tokens: int = 0,
        metrics: dict[str, float] | None = None,
        eval_follows: bool = False,
    ) -> None:
        """Call after each optimizer step. `samples` counts all ranks (global batch).

        `eval_follows=True` postpones this step's save decision to `report_eval`, so that a
        step that is both a save step and an evaluation step gets one checkpoint that
        carries the evaluation's metrics.
        """
        if self.ft is not None:  # only a committed step counts
            if not self.ft.step_committed():
                if self.signal.received:
                    self._boundary(eval_follows=False)  # stop at the last committed step
                return
            self.ft.check_joined()
            samples = getattr(self.registry.sampler, "committed_samples", lambda: samples)()
        if self.registry.engine is not None:
            self.registry.engine.at_step()  # before anything counts this step
        for check in self.registry.step_checks:
            check()
        p = self.run.progress
        p.step += 1
        self.run.clock.tick(p.step, time.monotonic())
        if self.progress_report is not None:
            self.progress_report.start()  # its thread writes the step, not this call
        p.samples_seen += samples
        p.tokens_seen += tokens
        sampler = self.registry.sampler
        if sampler is not None:
            advance = getattr(sampler, "advance", None)
            if advance is not None:
                advance(samples)
            p.epoch = int(getattr(sampler, "epoch", p.epoch))
        self.run.step_metrics = dict(metrics or {})
        self._eval_started = time.monotonic() if eval_follows else None
        if not self._data_checked:  # the loop's DataLoader is iterating now
            self._data_checked = True
            warn_data_setup(self.registry, p)
        self._boundary(eval_follows)

    def _boundary(self, eval_follows: bool) -> None:
        self.pipeline.collect(0.0)
        asked = self.requests is not None and self.requests.poll()
        local = {
            "stop": self.signal.received,
            "requested": asked,
            "time_due": self.dist.is_main
            and self.policy.time_due(
                time.monotonic(),
                busy=self.pipeline.busy,
                rate=self.requests.failure_rate if self.requests is not None else None,
            ),
            "busy": self.pipeline.busy,
            "retry_due": self.policy.retry_due(time.monotonic()),
            "fenced": self.run.termination is not None,
        }
        flags = self.dist.max_flags([int(v) for v in local.values()])
        agreed = Agreed(**{k: bool(v) for k, v in zip(local, flags, strict=True)})
        decision = self.policy.at_boundary(self.step_count, agreed, eval_follows=eval_follows)
        if self.ft is not None and self.ft.not_writer(decision.act):
            return
        if decision.act is Act.STOP_AFTER_EVAL:
            # should_stop stays False until `report_eval`, so the loop runs the evaluation.
            self._stop_after_eval = self.stopper.evaluate_first()
        elif decision.act is Act.STOP:
            self.stopper.stop(fenced=decision.fenced)
        elif decision.act is Act.SAVE and decision.reason is not None:
            self.pipeline.save(decision.reason, sync=not self.config.async_save)

    @exits_permanent
    def report_eval(self, metrics: dict[str, float]) -> bool:
        """Record evaluation metrics for the current step; saves if the named metric improved.

        After a stop agreed at this (evaluation) step, this is where the run stops: the
        preemption checkpoint carries these metrics, so when they are the best it is the
        best checkpoint (retention's best-K reads manifests' metrics)."""
        cfg, p = self.config, self.run.progress
        if self._eval_started is not None:
            self.stopper.eval_timer.record(time.monotonic() - self._eval_started)
            self._eval_started = None
        self._resolve_metric(metrics)
        self.run.step_metrics.update(metrics)
        p.metrics_history.append({"step": p.step, **metrics})
        improved = eval_improved(metrics, cfg.eval_metric, p.best_metric, cfg.eval_mode)
        improved = self.dist.main_decides(improved)
        if improved:
            p.best_metric = float(metrics[cfg.eval_metric])
            p.best_step = p.step
        if self._stop_after_eval:
            self._stop_after_eval = False
            self.policy.after_eval(improved)  # the preemption checkpoint serves it
            self.stopper.stop(fenced=False)
            return improved
        reason = self.policy.after_eval(improved)
        if reason is not None and (self.ft is None or self.ft.is_writer()):
            self.pipeline.save(reason, sync=not cfg.async_save)
        return improved

    def _resolve_metric(self, metrics: dict[str, float]) -> None:
        """Settle the configured metric's spelling on the key the results use (`loss` ->
        `eval_loss`, so retention finds it in manifests); warn once if it is absent."""
        cfg = self.config
        key = metric_key(metrics, cfg.eval_metric)
        if key is not None and key != cfg.eval_metric:
            log.info("eval metric %r is reported as %r: using that", cfg.eval_metric, key)
            cfg.eval_metric = key
        elif key is None and not self._metric_warned:
            self._metric_warned = True
            if cfg.eval_metric:
                log.warning(
                    "eval metric %r is not among the evaluation results %s: no eval-best "
                    "checkpoint will be saved until it appears",
                    cfg.eval_metric,
                    sorted(metrics),
                )
            else:
                log.info(
                    "no eval metric configured (LAZARUS_EVAL_METRIC; with HF's Trainer also "
                    "metric_for_best_model): evaluations save no eval-best checkpoint"
                )

    @property
    def stop_pending(self) -> bool:
        """A stop was agreed at an evaluation step: evaluate, then `report_eval` stops."""
        return self._stop_after_eval

    # --- saving, stopping, resuming ------------------------------------------------------
    @exits_permanent
    def save(self, reason: str = "requested") -> str | None:
        """A synchronous save of the current state; returns the committed name or None."""
        outcome = self.pipeline.save(reason, sync=True)
        return outcome.name if outcome else None

    @exits_permanent
    def close(self) -> int:
        """End of training (or after `should_stop`): final save, termination message, exit code."""
        if self.progress_report is not None:
            self.progress_report.flush()  # the last step, before a final save that may block
        if self._stop_after_eval:  # the loop left before reporting the evaluation
            self._stop_after_eval = False
            self.stopper.stop(fenced=False)
        if self.ft is not None and not self.ft.is_writer():
            self.config.save_at_end = False  # the writer group's final save holds this state
        return self.stopper.close()

    @exits_permanent
    def load_best(self) -> str | None:
        """Load the best evaluation's checkpoint weights into the registered models (HF's
        `load_best_model_at_end`): call after training. Returns its name, or None when no
        evaluation improved the metric or retention removed that checkpoint (logged)."""
        self.pipeline.collect(None)
        step = self.run.progress.best_step
        if step is None:
            log.warning(
                "load_best: no evaluation improved %r; weights unchanged", self.config.eval_metric
            )
            return None
        names = [
            n for n in self.storage.committed() if (parse_checkpoint_name(n) or (-1, 0))[0] == step
        ]
        if not names:
            log.error(
                "load_best: no committed checkpoint of step %d (the best %r) is left; "
                "keep it with LAZARUS_KEEP_BEST",
                step,
                self.config.eval_metric,
            )
            return None
        self.resumer.load_weights(names[0])
        log.info(
            "load_best: weights of %s (step %d, %s=%s) loaded",
            names[0],
            step,
            self.config.eval_metric,
            self.run.progress.best_metric,
        )
        return names[0]

    @exits_permanent
    def resume(self) -> str | None:
        """Restore everything from the configured pointer; returns the checkpoint used."""
        if self.ft is not None and self.ft.settings.replacement:
            log.info(
                "replica group %d joins its live peers: no checkpoint read", self.ft.settings.group
            )
            return None
        name = self.resumer.resume()
        if name is not None and self.policy.auto is not None:
            self.policy.auto.resumed(self.resumer.resumed_extra)  # the cost, rate it recorded
        if self.ft is not None:
            self.ft.after_resume()
        sampler = self.registry.sampler
        if name is not None and sampler is not None:
            # A position restored past its epoch's end moves on to the next epoch.
            self.run.progress.epoch = int(getattr(sampler, "epoch", self.run.progress.epoch))
            arm = getattr(sampler, "resume_rng", None)
            if arm is not None:  # the RNG now is the checkpoint's step boundary
                arm(capture_rng())
        return name

    def _deadline(self) -> float | None:
        return stop_deadline(self.signal.received_at, self.config.grace_seconds)
