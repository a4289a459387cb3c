"""The save pipeline: capture the state at a step boundary, write and commit it (here or on
the background thread), and apply each `SaveOutcome` to the run and the save policy.

At most one save is in flight; a new one first collects the previous one, so outcomes are
applied in order and the parent of each checkpoint is the one committed before it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from . import sharded
from .commit import Committer, Snapshot
from .meta import FORMAT_DCP, FORMAT_REPLICATED, SaveMeta
from .run_state import Context
from .save_policy import SavePolicy, committed_at
from .saver import BackgroundSaver, SaveOutcome, SaveStatus
from .signals import SaveTimer
from .snapshot import snapshot, synchronize
from .state import capture_common, capture_rank
from .tensorfile import pack

log = logging.getLogger("lazarus")


class SavePipeline:
    def __init__(
        self, ctx: Context, policy: SavePolicy, deadline: Callable[[], float | None]
    ) -> None:
        self.dist = dist = ctx.dist
        self.registry = ctx.registry
        self.run = ctx.run
        self.policy = policy
        self.saver = BackgroundSaver(ctx.config.save_nice)
        self.timer = SaveTimer()
        self.committer = Committer(ctx, self.saver.cancel, deadline)
        # More than one process: model and optimizer go through torch.distributed.checkpoint,
        # one shard object per rank, resharded on load (sharded.py); else rank 0 saves them.
        self.sharded = dist.active and dist.world_size > 1
        self._reuse: dict[str, Any] | None = None  # host buffers of the last finished snapshot
        # More facts a save records with its timings (replica groups' QuorumWatch.drain).
        self.facts: list[Callable[[], dict[str, float]]] = []

    @property
    def busy(self) -> bool:
        return self.saver.busy

    def collect(self, timeout: float | None = 0.0) -> SaveOutcome | None:
        """The in-flight save's outcome, applied (waiting up to `timeout`; None: until done)."""
        done = self.saver.collect(timeout)
        if done is not None:
            self.apply(done)
        return done

    def cancel(self) -> None:
        """Make the in-flight save stop retrying and fail fast."""
        self.saver.cancel.set()

    def save(self, reason: str, *, sync: bool) -> SaveOutcome | None:
        """Save the current state. The outcome when `sync`; None when the write went to the
        background, or when this step's state is committed already."""
        self.collect(None)
        if committed_at(self.run.last_committed, self.run.progress.step):
            return None  # this exact state is committed already
        snap, meta = self._capture(str(reason))

        def job(background: bool) -> SaveOutcome:
            out = self.committer.write(snap, meta, background=background)
            out.seconds += meta.stall_seconds
            self._reuse = snap.tree
            return out

        if sync:
            outcome = job(False)
            self.apply(outcome)
            return outcome
        self.saver.submit(lambda: job(True))
        return None

    def _capture(self, reason: str) -> tuple[Snapshot, SaveMeta]:
        """Host copies of everything a checkpoint holds: the stall training waits for."""
        p = self.run.progress
        t0 = time.monotonic()
        use_dcp = self.sharded
        common = (
            capture_common(self.registry, p, self.run.user_state, model_optim=not use_dcp)
            if self.dist.is_main
            else None
        )
        if common is not None and use_dcp:
            common["sharded"] = sharded.names(self.registry)
        # The replicated and per-rank objects are packed into the raw layout, each in the
        # buffer of the previous save when the tensors still match (tensorfile.py); DCP's
        # state is copied as a tree for torch.distributed.checkpoint to write; an engine that
        # saves its own state (DeepSpeed) hands over its files' bytes, copied already.
        old = self._reuse or {}
        engine = self.registry.engine
        tree: dict[str, Any] = {
            "common": pack(common, old.get("common")) if common is not None else None,
            "rank": pack(capture_rank(self.registry.rank_extras), old.get("rank")),
            "sharded": (
                snapshot(sharded.capture(self.registry), reuse=old.get("sharded"))
                if use_dcp
                else None
            ),
            "engine": engine.capture() if engine is not None else None,
        }
        layout = FORMAT_DCP if use_dcp else FORMAT_REPLICATED
        layout = engine.layout if engine is not None else layout
        synchronize()
        self._reuse = None
        stall = time.monotonic() - t0
        self.policy.started(time.monotonic(), stall)
        meta = SaveMeta(
            step=p.step,
            epoch=p.epoch,
            samples_seen=p.samples_seen,
            tokens_seen=p.tokens_seen,
            metrics={k: float(v) for k, v in self.run.step_metrics.items()},
            reason=reason,
            model_optimizer=layout,
            captured_at=t0,
            stall_seconds=stall,
            steps_per_second=self.run.clock.rate(p.step, t0),
            schedule=self._facts(),
        )
        log.info("save %s at step %d: state copied in %.3fs", reason, p.step, stall)
        return Snapshot(tree), meta

    def _facts(self) -> dict[str, Any]:
        out: dict[str, Any] = self.policy.auto.facts() if self.policy.auto is not None else {}
        for more in self.facts:
            out.update(more())
        return out

    def apply(self, out: SaveOutcome) -> None:
        """What a finished save means for the run: committed, fenced out, or to be retried."""
        run = self.run
        if out.status is SaveStatus.COMMITTED:
            run.last_committed = (out.detail, out.step)
            self.timer.record(out.seconds)
            log.info("committed %s (%s) in %.2fs", out.detail, out.reason, out.seconds)
            return
        if out.status is SaveStatus.FENCED:
            log.error(
                "fenced out: a newer attempt exists; stopping without saving (%s)", out.detail
            )
            run.preempted(f"fenced out by a newer attempt: {out.detail}")
            return
        run.failed_saves.append(f"step {out.step}: {out.detail}")
        log.error(
            "save %s at step %d FAILED, will retry at the next step: %s",
            out.reason,
            out.step,
            out.detail,
        )
        self.policy.failed(out.reason, time.monotonic())
