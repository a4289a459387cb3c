"""`Lazarus`: register what to save, call `step()` once per optimizer step, ask `should_stop`."""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from lazarus_contract import checkpoint_name

from . import sharded
from . import storage as st
from .config import LazarusConfig
from .distributed import Collectives
from .progress import ProgressReport
from .requests import CheckpointRequestWatcher
from .rng import seed_all
from .saver import BackgroundSaver, SaveOutcome, with_retries
from .signals import SaveTimer, StopSignal
from .snapshot import snapshot, synchronize
from .state import (
    COMMON_OBJECT,
    FORMAT_VERSION,
    READ_FORMATS,
    Progress,
    Registry,
    Stateful,
    capture_common,
    capture_rank,
    deserialize,
    rank_object,
    restore_common,
    restore_rank,
    serialize,
    trainer_format,
)
from .termination import PermanentError, Termination, write_termination

log = logging.getLogger("lazarus")


def _timings(
    t: dict[str, float], entries: list[st.Entry], attempt: int, resume_s: float | None
) -> dict[str, Any]:
    """Save and resume timings for the manifest; the operator exports them as metrics
    (contract section 4). Measured up to the commit, which the manifest itself ends."""
    now = time.monotonic()
    out: dict[str, Any] = {
        "stallSeconds": t["stallSeconds"],
        "saveSeconds": t["stallSeconds"] + now - t.get("writeStart", now),
        "durableSeconds": now - t["capturedAt"],
        "bytes": sum(e.size for e in entries),
        "attempt": attempt,
    }
    if resume_s is not None:
        out["resumeSeconds"] = resume_s
    return out


class Lazarus:
    """Checkpoint manager for one training process (one per rank)."""

    def __init__(
        self, config: LazarusConfig | None = None, *, storage: st.Storage | None = None
    ) -> None:
        self.config = config or LazarusConfig.from_env()
        self.dist = Collectives()
        cfg = self.config
        job = st.JobIdentity(cfg.job_name, cfg.job_namespace, cfg.job_uid)
        self.storage = storage or st.open_storage(cfg.checkpoint_uri, cfg.attempt, job)
        if self.storage.attempt is not None:
            cfg.attempt = self.storage.attempt  # a filesystem root's own numbering
        self.registry = Registry()
        self.progress = Progress()
        self.user_state: dict[str, Any] = {}
        self.signal = StopSignal()
        if self.config.handle_signals:
            self.signal.install()
        self.requests = CheckpointRequestWatcher() if self.dist.is_main else None
        # Each pod's launcher rank keeps its termination file current (progress.py).
        writes = self.dist.is_main or os.environ.get("LOCAL_RANK") == "0"
        self.progress_report = ProgressReport() if writes else None
        self.saver = BackgroundSaver()
        self.timer = SaveTimer()
        self.last_committed: tuple[str, int] | None = None
        self.resumed_from: str | None = None
        self.should_stop = False
        self.termination: Termination | None = None
        self.failed_saves: list[str] = []
        self._last_save_at = time.monotonic()
        self._resume_seconds: float | None = None  # load time, recorded in manifests
        self._pending: str | None = None  # a save decided while another was in flight
        self._retry: str | None = None  # reason of a save that failed in the background
        self._retry_at = 0.0  # not before this time: an outage is not hammered every step
        self._deferred: str | None = None  # decided at a step an evaluation will follow
        self._step_metrics: dict[str, float] = {}
        self._reuse: Any = None  # host buffers of the last finished snapshot
        # More than one process: model and optimizer go through torch.distributed.checkpoint,
        # one shard object per rank, resharded on load (sharded.py); else rank 0 saves them.
        self.sharded = self.dist.active and self.dist.world_size > 1

    # --- registration --------------------------------------------------------------------
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
        return self

    @property
    def step_count(self) -> int:
        return self.progress.step

    @property
    def epoch(self) -> int:
        return self.progress.epoch

    # --- the step boundary ---------------------------------------------------------------
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
        p = self.progress
        p.step += 1
        if self.progress_report is not None:
            self.progress_report.step(p.step, self.last_committed)
        p.samples_seen += samples
        p.tokens_seen += tokens
        sampler = self.registry.sampler
        if sampler is not None:
            advance = getattr(sampler, "advance", None)
            if advance is not None and samples:
                advance(samples)
            p.epoch = int(getattr(sampler, "epoch", p.epoch))
        self._step_metrics = dict(metrics or {})
        self._boundary(eval_follows)

    def set_epoch(self, epoch: int) -> None:
        self.progress.epoch = epoch

    def _boundary(self, eval_follows: bool) -> None:
        outcome = self.saver.collect(0.0)
        if outcome is not None:
            self._on_outcome(outcome)
        cfg = self.config
        asked = self.requests is not None and self.requests.poll()
        due = (
            self.dist.is_main
            and cfg.save_every_seconds > 0
            and time.monotonic() - self._last_save_at >= cfg.save_every_seconds
        )
        stop, requested, time_due, busy, retry, fenced = self.dist.max_flags(
            [
                int(self.signal.received),
                int(asked),
                int(due),
                int(self.saver.busy),
                int(self._retry is not None and time.monotonic() >= self._retry_at),
                int(self.termination is not None),
            ]
        )
        if stop or fenced:
            self._stop(fenced=bool(fenced))
            return
        reason: str | None = None
        if requested:
            reason = "requested"
        elif (cfg.save_every_steps and self.progress.step % cfg.save_every_steps == 0) or time_due:
            reason = "periodic"
        elif retry:
            reason = self._retry or "periodic"
        elif self._pending:
            reason = self._pending
        if eval_follows:
            self._deferred = reason
            return
        if reason is None:
            return
        if busy and reason == "periodic":
            self._pending = reason  # at most one in flight: try again at the next boundary
            return
        self._save(reason, sync=not cfg.async_save)

    def report_eval(self, metrics: dict[str, float]) -> bool:
        """Record evaluation metrics for the current step; saves if the named metric improved."""
        cfg = self.config
        p = self.progress
        self._step_metrics.update(metrics)
        p.metrics_history.append({"step": p.step, **metrics})
        improved = False
        if cfg.eval_metric and cfg.eval_metric in metrics:
            value = float(metrics[cfg.eval_metric])
            best = p.best_metric
            improved = best is None or (value < best if cfg.eval_mode == "min" else value > best)
        # Rank 0 decides, so ranks with slightly different metric values never disagree.
        improved = bool(self.dist.max_flags([int(improved and self.dist.is_main)])[0])
        if improved:
            p.best_metric = float(metrics[cfg.eval_metric])
            p.best_step = p.step
            self._deferred = None
            self._save("eval-best", sync=not cfg.async_save, wait_in_flight=True)
        elif self._deferred is not None:
            reason, self._deferred = self._deferred, None
            self._save(reason, sync=not cfg.async_save)
        return improved

    # --- saving --------------------------------------------------------------------------
    def save(self, reason: str = "requested") -> str | None:
        """A synchronous save of the current state; returns the committed name or None."""
        outcome = self._save(reason, sync=True)
        return outcome.name if outcome else None

    def _save(self, reason: str, *, sync: bool, wait_in_flight: bool = True) -> SaveOutcome | None:
        if self.saver.busy or wait_in_flight:
            done = self.saver.collect(None)
            if done is not None:
                self._on_outcome(done)
        p = self.progress
        if self.last_committed is not None and self.last_committed[1] == p.step:
            return None  # this exact state is committed already
        self._pending = None
        self._retry = None
        t0 = time.monotonic()
        use_dcp = self.sharded
        common = (
            capture_common(self.registry, p, self.user_state, model_optim=not use_dcp)
            if self.dist.is_main
            else None
        )
        if common is not None and use_dcp:
            common["sharded"] = sharded.names(self.registry)
        captured = {
            "common": common,
            "rank": capture_rank(),
            "sharded": sharded.capture(self.registry) if use_dcp else None,
        }
        snap = snapshot(captured, reuse=self._reuse)
        synchronize()
        self._reuse = None
        stall = time.monotonic() - t0
        self._last_save_at = time.monotonic()
        meta = {
            "step": p.step,
            "epoch": p.epoch,
            "samples_seen": p.samples_seen,
            "tokens_seen": p.tokens_seen,
            "metrics": {k: float(v) for k, v in self._step_metrics.items()},
            "reason": reason,
            "modelOptimizer": sharded.FORMAT_DCP if use_dcp else sharded.FORMAT_REPLICATED,
            "timings": {"capturedAt": t0, "stallSeconds": stall},
        }
        log.info("save %s at step %d: state copied in %.3fs", reason, p.step, stall)

        def job(background: bool) -> SaveOutcome:
            out = self._write_and_commit(snap, meta, background=background)
            out.seconds += stall
            self._reuse = snap
            return out

        if sync:
            outcome = job(False)
            self._on_outcome(outcome)
            return outcome
        self.saver.submit(lambda: job(True))
        return None

    def _write_and_commit(self, snap: Any, meta: dict[str, Any], background: bool) -> SaveOutcome:
        t0 = time.monotonic()
        step, reason = int(meta["step"]), str(meta["reason"])
        name = checkpoint_name(step, self.config.attempt)
        entries: list[st.Entry] = []
        error: str | None = None
        opened: list[st.Writer] = []
        stage: contextlib.AbstractContextManager[list[Path]] = (
            sharded.staged(snap["sharded"], self.dist.ckpt_group)
            if snap.get("sharded") is not None
            else contextlib.nullcontext([])
        )
        try:
            # Staging DCP shards is a collective: every rank does it before touching the store,
            # so a rank whose upload fails never leaves the others waiting inside DCP.
            with stage as files:
                self._upload(
                    name, step=step, snap=snap, files=files, opened=opened, entries=entries
                )
        except Exception as exc:
            error = f"rank {self.dist.rank}: {exc}"
        writer = opened[0] if opened else None
        gathered = self.dist.gather_to_main((entries, error), background=background)
        result: tuple[str, str] = ("error", "")
        if gathered is not None:
            errors = [e for _, e in gathered if e]
            if errors:
                result = ("error", "; ".join(errors))
            else:
                assert writer is not None
                every = [e for ents, _ in gathered for e in ents]
                meta["timings"]["writeStart"] = t0
                result = self._commit(writer, every, meta)
        result = self.dist.broadcast(result, background=background)
        seconds = time.monotonic() - t0
        if result[0] == "ok":
            return SaveOutcome(result[1], step, reason, seconds)
        if writer is not None and result[0] == "error":
            try:
                writer.abort()
            except Exception as exc:
                log.warning("abort of %s failed: %s", name, exc)
        return SaveOutcome(
            None, step, reason, seconds, error=result[1], fenced=result[0] == "fenced"
        )

    def _upload(
        self,
        name: str,
        *,
        step: int,
        snap: Any,
        files: list[Path],
        opened: list[st.Writer],
        entries: list[st.Entry],
    ) -> None:
        """Open this rank's writer and upload its objects: DCP shard files, then the trainer's."""
        cfg = self.config
        deadline = self._deadline()

        def retried(fn: Callable[[], None], what: str) -> None:
            with_retries(
                fn,
                tries=cfg.save_retries,
                backoff=cfg.retry_backoff,
                what=what,
                cancel=self.saver.cancel,
                deadline=deadline,
            )

        retried(lambda: opened.append(self.storage.begin(step, cfg.attempt)), f"begin {name}")
        writer = opened[0]
        uploads: list[tuple[str, Callable[[], st.Entry]]] = [
            (
                sharded.DCP_PREFIX + f.name,
                lambda p=sharded.DCP_PREFIX + f.name, f=f: writer.put_file(p, f),  # type: ignore[misc]
            )
            for f in files
        ]
        objects = {rank_object(self.dist.rank): snap["rank"]}
        if snap["common"] is not None:
            objects[COMMON_OBJECT] = snap["common"]
        for path, obj in objects.items():
            data = serialize(obj)
            uploads.append((path, lambda p=path, d=data: writer.put(p, d)))  # type: ignore[misc]
        for path, put in uploads:
            box: list[st.Entry] = []
            retried(lambda u=put, b=box: b.append(u()), f"upload {name}/{path}")  # type: ignore[misc]
            entries.append(box[0])

    def _commit(
        self, writer: st.Writer, entries: list[st.Entry], meta: dict[str, Any]
    ) -> tuple[str, str]:
        cfg = self.config
        try:
            name = writer.commit(
                entries,
                epoch=meta["epoch"],
                reason=meta["reason"],
                metrics=meta["metrics"],
                world_size=self.dist.world_size,
                parent=self.last_committed[0] if self.last_committed else None,
                job={"name": cfg.job_name, "namespace": cfg.job_namespace, "uid": cfg.job_uid},
                samples_seen=meta["samples_seen"],
                tokens_seen=meta["tokens_seen"],
                torch_version=torch.__version__,
                extra={
                    "lazarusTrainer": {
                        "format": FORMAT_VERSION,
                        "worldSize": self.dist.world_size,
                        "modelOptimizer": meta["modelOptimizer"],
                        "timings": _timings(
                            meta["timings"], entries, cfg.attempt, self._resume_seconds
                        ),
                    }
                },
            )
        except st.FencedOut as exc:
            return ("fenced", str(exc))
        except Exception as exc:
            return ("error", f"commit failed: {exc}")
        self._prune(name)
        return ("ok", name)

    def _prune(self, committed: str) -> None:
        cfg = self.config
        if not (cfg.keep_latest or cfg.keep_best):
            return
        try:
            self.storage.prune(
                keep_latest=cfg.keep_latest,
                keep_best=cfg.keep_best,
                metric=cfg.eval_metric or None,
                mode=cfg.eval_mode,
                resumed_from=self.resumed_from,
            )
        except Exception as exc:
            log.error(
                "retention after %s failed (nothing lost, will retry next commit): %s",
                committed,
                exc,
            )

    def _on_outcome(self, out: SaveOutcome) -> None:
        if out.name is not None:
            self.last_committed = (out.name, out.step)
            self.timer.record(out.seconds)
            log.info("committed %s (%s) in %.2fs", out.name, out.reason, out.seconds)
            return
        if out.fenced:
            log.error("fenced out: a newer attempt exists; stopping without saving (%s)", out.error)
            self.termination = Termination(
                "preempted",
                self.progress.step,
                self.last_committed,
                f"fenced out by a newer attempt: {out.error}",
            )
            return
        self.failed_saves.append(f"step {out.step}: {out.error}")
        log.error(
            "save %s at step %d FAILED, will retry at the next step: %s",
            out.reason,
            out.step,
            out.error,
        )
        if out.reason != "preemption":
            self._retry = out.reason
            self._retry_at = time.monotonic() + self.config.retry_backoff * 8

    def _deadline(self) -> float | None:
        if self.signal.received_at is None:
            return None
        return self.signal.received_at + self.config.grace_seconds

    # --- stopping ------------------------------------------------------------------------
    def _stop(self, *, fenced: bool) -> None:
        self.should_stop = True
        p = self.progress
        if fenced or self.termination is not None:
            if self.termination is None:
                self.termination = Termination(
                    "preempted", p.step, self.last_committed, "fenced out by a newer attempt"
                )
            return
        received = self.signal.received_at or time.monotonic()
        why = self.signal.name if self.signal.received else "a stop on another rank"
        deadline = received + self.config.grace_seconds
        if self.saver.busy:
            in_flight_estimate = self.timer.estimate() or 0.0
            done = self.saver.collect(max(0.0, deadline - time.monotonic() - in_flight_estimate))
            if done is None:
                self.saver.cancel.set()  # stop retrying; let it fail fast
                done = self.saver.collect(None)
            if done is not None:
                self._on_outcome(done)
        if self.last_committed is not None and self.last_committed[1] == p.step:
            name = self.last_committed[0]
            self.termination = Termination(
                "preempted",
                p.step,
                self.last_committed,
                f"{why} at step {p.step}; checkpoint {name} of this step already committed",
                saved_on_signal=True,
            )
            return
        estimate = self.timer.estimate()
        remaining = deadline - time.monotonic()
        shortfall = estimate is not None and estimate > remaining
        shortfall = bool(self.dist.max_flags([int(shortfall and self.dist.is_main)])[0])
        if shortfall:
            msg = (
                f"{why} at step {p.step}: {remaining:.1f}s of grace left, a save takes "
                f"~{estimate:.1f}s; not starting one (last checkpoint: "
                f"{self.last_committed[0] if self.last_committed else 'none'})"
            )
            log.error(msg)
            self.termination = Termination(
                "preempted", p.step, self.last_committed, msg, grace_shortfall=True
            )
            return
        t0 = time.monotonic()
        outcome = self._save("preemption", sync=True)
        took = time.monotonic() - t0
        if outcome is not None and outcome.name is not None:
            msg = f"{why} at step {p.step}; preemption checkpoint committed in {took:.1f}s"
            self.termination = Termination(
                "preempted", p.step, self.last_committed, msg, saved_on_signal=True
            )
        else:
            err = outcome.error if outcome else "?"
            msg = f"{why} at step {p.step}; preemption save failed: {err}"
            log.error(msg)
            self.termination = Termination("preempted", p.step, self.last_committed, msg)

    def close(self) -> int:
        """End of training (or after `should_stop`): final save, termination message, exit code."""
        if self.termination is None:
            done = self.saver.collect(None)
            if done is not None:
                self._on_outcome(done)
            if self.config.save_at_end:
                delay = self.config.retry_backoff
                for _ in range(6):  # the final save outlasts a short storage outage
                    self._save("final", sync=True)
                    if self.last_committed and self.last_committed[1] == self.progress.step:
                        break
                    time.sleep(delay)
                    delay *= 2
            ok = not self.config.save_at_end or (
                self.last_committed is not None and self.last_committed[1] == self.progress.step
            )
            self.termination = Termination(
                "completed" if ok else "error",
                self.progress.step,
                self.last_committed,
                f"training finished at step {self.progress.step}"
                if ok
                else f"training finished but the final save failed: {self.failed_saves[-1:]}",
            )
        # Rank 0, and local rank 0 of every other node: each pod's launcher reads its own.
        if self.dist.is_main or os.environ.get("LOCAL_RANK") == "0":
            write_termination(self.termination)
        return self.termination.exit_code

    # --- resuming ------------------------------------------------------------------------
    def resume(self) -> str | None:
        """Restore everything from the configured pointer; returns the checkpoint used."""
        t0 = time.monotonic()
        name = self._resume()
        self._resume_seconds = time.monotonic() - t0 if name else None
        if self.dist.is_main:
            self.storage.record_start(name, self.progress.step if name else -1)
        return name

    def _resume(self) -> str | None:
        ptr = self.config.resume_from
        if not ptr:
            log.info("no resume pointer: starting fresh")
            return None
        valid = self.storage.committed()
        if ptr == "auto":
            candidates = valid
            if not candidates:
                log.info("resume=auto: no valid checkpoint yet, starting fresh")
                return None
        else:
            name = self.storage.resolve(ptr)
            self._check_manifest(name, explicit=True)
            candidates = [name] + [n for n in valid if n < name]
        for name in candidates:
            if self._try_load(name):
                return name
        raise PermanentError(
            f"no loadable checkpoint among {candidates[:5]}: all failed validation"
        )

    def _check_manifest(self, name: str, explicit: bool) -> st.Manifest:
        try:
            manifest = self.storage.read_manifest(name)
        except st.CheckpointNotFound as exc:
            raise PermanentError(f"resume pointer {name!r}: no such checkpoint ({exc})") from None
        except st.InvalidCheckpoint as exc:
            if explicit:
                raise PermanentError(f"resume pointer {name!r} is unusable: {exc}") from None
            raise
        cfg, job = self.config, manifest.job
        if cfg.job_uid and job.uid and job.uid != cfg.job_uid:
            # Same namespace/name, new UID: the job was deleted and re-applied on
            # the same root (contract section 6) and continues its lineage.
            if (job.namespace, job.name) != (cfg.job_namespace, cfg.job_name):
                raise PermanentError(
                    f"checkpoint {name} belongs to job {job.namespace}/{job.name} "
                    f"(uid {job.uid}), not this job {cfg.job_namespace}/{cfg.job_name} "
                    f"(uid {cfg.job_uid})"
                )
            log.info(
                "checkpoint %s was written by an earlier %s/%s (uid %s): the job was "
                "re-created; continuing its lineage",
                name,
                job.namespace,
                job.name,
                job.uid,
            )
        fmt = trainer_format(manifest)
        if fmt not in READ_FORMATS:
            raise PermanentError(f"checkpoint {name} has unknown trainer format {fmt!r}")
        return manifest

    def _try_load(self, name: str) -> bool:
        ok, error = True, ""
        common: Any = None
        rank_state: Any = None
        manifest: st.Manifest | None = None
        reader: sharded.StoreReader | None = None
        try:
            manifest = self._check_manifest(name, explicit=False)
            fmt = (manifest.extra.get("lazarusTrainer") or {}).get(
                "modelOptimizer", sharded.FORMAT_REPLICATED
            )
            if fmt not in (sharded.FORMAT_DCP, sharded.FORMAT_REPLICATED):
                raise PermanentError(
                    f"checkpoint {name} has unknown model/optimizer format {fmt!r}"
                )
            tf, mine = trainer_format(manifest), rank_object(self.dist.rank)
            common = deserialize(self.storage.read_bytes(name, COMMON_OBJECT), COMMON_OBJECT, tf)
            if manifest.world_size == self.dist.world_size:
                rank_state = deserialize(self.storage.read_bytes(name, mine), mine, tf)
            if fmt == sharded.FORMAT_DCP:
                reader = sharded.StoreReader(
                    lambda path, local: self.storage.download(name, path, local)
                )
                meta = reader.read_metadata()
                names = common.get("sharded")
                if not isinstance(names, dict):
                    raise st.InvalidCheckpoint(f"{COMMON_OBJECT}: no sharded-state names")
                sharded.check_compatible(self.registry, names, meta)
        except (st.InvalidCheckpoint, st.CheckpointNotFound) as exc:
            ok, error = False, str(exc)
        try:
            if not self._agree(name, ok, error):
                return False
            loaded: dict[str, Any] | None = None
            if reader is not None:
                # Load into copies, so a shard failing verification leaves the model as it was.
                loaded = snapshot(sharded.capture(self.registry))
                try:
                    sharded.load(loaded, reader, self.dist.ckpt_group)
                except Exception as exc:
                    bad = [
                        e
                        for e in sharded.failures(exc)
                        if isinstance(e, st.InvalidCheckpoint | st.CheckpointNotFound)
                    ]
                    if not bad:
                        raise
                    ok, error = False, str(bad[0])
                if not self._agree(name, ok, error):
                    return False
        finally:
            if reader is not None:
                reader.cleanup()
        assert manifest is not None
        if loaded is not None:
            sharded.apply(self.registry, loaded)
        self.progress, self.user_state = restore_common(
            self.registry, common, model_optim=loaded is None
        )
        if rank_state is not None:
            restore_rank(rank_state)
        else:
            seed = 1_000_003 * self.progress.step + self.dist.rank
            log.warning(
                "world size changed %s -> %d: per-rank RNG state cannot be resharded; "
                "rank %d RNGs reseeded with %d (model and optimizer %s)",
                manifest.world_size,
                self.dist.world_size,
                self.dist.rank,
                seed,
                "resharded by torch.distributed.checkpoint"
                if loaded is not None
                else "restored exactly",
            )
            seed_all(seed)
        self.last_committed = (name, manifest.step)
        self.resumed_from = name
        log.info("resumed from %s at step %d", name, self.progress.step)
        return True

    def _agree(self, name: str, ok: bool, error: str) -> bool:
        """All ranks accept the checkpoint, or it is quarantined and an older one is tried."""
        if self.dist.all_ok(ok):
            return True
        log.error(
            "checkpoint %s failed validation (%s); falling back to an older one",
            name,
            error or "on another rank",
        )
        if self.dist.is_main:
            try:
                self.storage.quarantine(name, f"trainer validation: {error or 'another rank'}")
            except Exception as exc:
                log.error("could not quarantine %s: %s", name, exc)
        return False
