"""Writing one captured snapshot as a checkpoint, on every rank.

Each rank opens its writer and uploads its objects (DCP shard files, its RNG state; rank 0
also the replicated state), retrying each call; rank 0 gathers every rank's entries,
commits them under one manifest, applies retention, and broadcasts its `CommitResult`.
Nothing is committed unless every rank's uploads succeeded.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import torch

from lazarus_contract import checkpoint_name

from . import dedup, sharded
from . import storage as st
from .meta import SaveMeta, SaveTimings, TrainerExtra
from .retry import retry
from .run_state import Context
from .saver import CommitResult, SaveOutcome, SaveStatus, background_pool
from .state import COMMON_OBJECT, FORMAT_VERSION, rank_object
from .tensorfile import Packed

log = logging.getLogger("lazarus")

T = TypeVar("T")


@dataclass(frozen=True)
class Snapshot:
    """Host copies of one step's state; `tree` is reused by the next capture."""

    tree: dict[str, Any]

    @property
    def common(self) -> Packed | None:
        """State replicated on every rank (rank 0 only), packed as its object's bytes."""
        common: Packed | None = self.tree["common"]
        return common

    @property
    def rank(self) -> Packed:
        """This rank's own state (its RNGs), packed as its object's bytes."""
        rank: Packed = self.tree["rank"]
        return rank

    @property
    def sharded(self) -> dict[str, Any] | None:
        """Model and optimizer for torch.distributed.checkpoint, when they are sharded."""
        state: dict[str, Any] | None = self.tree["sharded"]
        return state

    @property
    def engine(self) -> dict[str, bytes]:
        """This rank's files of an engine that saves its own state (engine_state.py)."""
        files: dict[str, bytes] | None = self.tree.get("engine")
        return files or {}


class Committer:
    """Writes snapshots for one rank; rank 0 also commits and prunes."""

    def __init__(
        self, ctx: Context, cancel: threading.Event, deadline: Callable[[], float | None]
    ) -> None:
        self.config = ctx.config
        self.dist = ctx.dist
        self.storage = ctx.storage
        self.run = ctx.run
        self.cancel = cancel  # set by the stop handling: stop retrying, fail fast
        self.deadline = deadline  # the end of the grace period after a stop signal, if any
        # The save's own I/O threads, few and at a lower priority: a trainer needs its cores.
        self.threads = max(1, self.config.save_threads)
        self.pool = background_pool(self.threads, self.config.save_nice)
        # Content-addressed saves (dedup.py): the replicated object as shared chunks,
        # each stored once per job, when worth it; its last chunks, for the next save.
        self.dedup = dedup.mode()
        self.hints = dedup.Hints()
        self.chunked: str | None = None  # the last checkpoint committed with chunks

    def write(self, snap: Snapshot, meta: SaveMeta, *, background: bool) -> SaveOutcome:
        """Upload, then commit (rank 0): the same outcome on every rank."""
        t0 = time.monotonic()
        name = checkpoint_name(meta.step, self.config.attempt)
        writer, entries, error = self._stage_and_upload(name, meta.step, snap, background)
        gathered = self.dist.gather_to_main((entries, error), background=background)
        result = CommitResult.failed("")  # until rank 0's verdict arrives
        if gathered is not None:
            errors = [e for _, e in gathered if e]
            if errors:
                result = CommitResult.failed("; ".join(errors))
            else:
                assert writer is not None
                every = [e for ents, _ in gathered for e in ents]
                result = self._commit(writer, every, meta, write_start=t0)
        result = self.dist.broadcast(result, background=background)
        outcome = SaveOutcome.of(result, meta.step, meta.reason, time.monotonic() - t0)
        if writer is not None and result.status is SaveStatus.FAILED:
            try:
                writer.abort()
            except Exception as exc:
                log.warning("abort of %s failed: %s", name, exc)
        return outcome

    def _stage_and_upload(
        self, name: str, step: int, snap: Snapshot, background: bool
    ) -> tuple[st.Writer | None, list[st.Entry], str | None]:
        """This rank's writer (None if it could not open one), entries and error."""
        writer: st.Writer | None = None
        stage: contextlib.AbstractContextManager[list[Path]] = (
            sharded.staged(snap.sharded, self.dist.ckpt_group)
            if snap.sharded is not None
            else contextlib.nullcontext([])
        )
        try:
            # Staging DCP shards is a collective: every rank does it before touching the store,
            # so a rank whose upload fails never leaves the others waiting inside DCP.
            with stage as files:
                deadline = self.deadline()
                begin = functools.partial(
                    self.storage.begin,
                    step,
                    self.config.attempt,
                    uid=self.config.job_uid,
                    reuse_from=self._reuse_from(),
                )
                writer = self._retried(begin, f"begin {name}", deadline)
                uploads = self._upload(name, writer, snap, files, deadline, background=background)
                return writer, uploads, None
        except Exception as exc:
            return writer, [], f"rank {self.dist.rank}: {exc}"

    def _upload(
        self,
        name: str,
        writer: st.Writer,
        snap: Snapshot,
        files: list[Path],
        deadline: float | None,
        *,
        background: bool,
    ) -> list[st.Entry]:
        """DCP shard files, then the trainer's objects, sent straight from their buffers.

        A background save uses the few, nicer save threads (training goes on); a synchronous
        one (training waits, e.g. a SIGTERM save within the grace period) the store's own."""
        pool, n = (self.pool, self.threads) if background else (None, None)
        uploads: list[tuple[str, Callable[[], st.Entry]]] = []
        for f in files:
            path = sharded.DCP_PREFIX + f.name
            put = functools.partial(writer.put_file, path, f, pool=pool, concurrency=n)
            uploads.append((path, put))
        for path, data in snap.engine.items():
            put = functools.partial(writer.put, path, data, pool=pool, concurrency=n)
            uploads.append((path, put))
        objects = {rank_object(self.dist.rank): snap.rank}
        if snap.common is not None and dedup.worth(snap.common, self.dedup, self.hints):
            common = snap.common
            put_c = functools.partial(self._put_chunked, writer, common, pool)
            uploads.append((COMMON_OBJECT, put_c))
        elif snap.common is not None:
            objects[COMMON_OBJECT] = snap.common
        for path, packed in objects.items():
            put = functools.partial(writer.put, path, packed.view(), pool=pool, concurrency=n)
            uploads.append((path, put))
        return [self._retried(put, f"upload {name}/{path}", deadline) for path, put in uploads]

    def _reuse_from(self) -> tuple[str, ...]:
        """Checkpoints whose shared chunks a save may reference: the last one committed
        and the one this attempt resumed from (both the job's)."""
        last = self.run.last_committed[0] if self.run.last_committed else None
        names = (last, self.chunked, self.run.resumed_from)
        return tuple(dict.fromkeys(n for n in names if n))

    def _put_chunked(self, writer: st.Writer, packed: Packed, pool: Any) -> st.Entry:
        pieces = dedup.pieces(packed, self.storage.piece_size, self.hints)
        out = writer.put_chunks(COMMON_OBJECT, packed.view(), pieces, pool=pool)
        size = out.uploaded_bytes + out.reused_bytes
        reused = out.reused_bytes / size if size else 1.0
        self.hints = dedup.remember(packed, pieces, out.entry.chunks, reused)
        log.debug(
            "%s: %d bytes uploaded, %d reused, %d hashed",
            COMMON_OBJECT,
            out.uploaded_bytes,
            out.reused_bytes,
            out.hashed_bytes,
        )
        return out.entry

    def _retried(self, fn: Callable[[], T], what: str, deadline: float | None) -> T:
        cfg = self.config
        return retry(
            fn,
            tries=cfg.save_retries,
            backoff=cfg.retry_backoff,
            what=what,
            cancel=self.cancel,
            deadline=deadline,
        )

    def _commit(
        self, writer: st.Writer, entries: list[st.Entry], meta: SaveMeta, *, write_start: float
    ) -> CommitResult:
        cfg = self.config
        timings = SaveTimings.measure(
            meta,
            write_start=write_start,
            now=time.monotonic(),
            nbytes=sum(e.size for e in entries),
            attempt=cfg.attempt,
            resume_seconds=self.run.resume_seconds,
        )
        extra = TrainerExtra(
            FORMAT_VERSION, self.dist.world_size, meta.model_optimizer, timings.to_json()
        )
        try:
            name = writer.commit(
                entries,
                epoch=meta.epoch,
                reason=meta.reason,
                metrics=meta.metrics,
                world_size=self.dist.world_size,
                parent=self.run.parent,
                job={"name": cfg.job_name, "namespace": cfg.job_namespace, "uid": cfg.job_uid},
                samples_seen=meta.samples_seen,
                tokens_seen=meta.tokens_seen,
                torch_version=torch.__version__,
                extra=extra.to_extra(),
            )
        except st.FencedOut as exc:
            return CommitResult(SaveStatus.FENCED, str(exc))
        except Exception as exc:
            return CommitResult.failed(f"commit failed: {exc}")
        if any(e.chunks for e in entries):
            self.chunked = name
        self._prune(name)
        return CommitResult(SaveStatus.COMMITTED, name)

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
                resumed_from=self.run.resumed_from,
            )
        except Exception as exc:
            log.error(
                "retention after %s failed (nothing lost, will retry next commit): %s",
                committed,
                exc,
            )
