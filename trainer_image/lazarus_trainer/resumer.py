"""Resume: choose the checkpoint (the pointer's, else the newest valid one in the lineage),
check that it belongs to this job and can be read, load it on every rank, and fall back to
an older one (quarantining the bad one) unless every rank loaded its part.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from lazarus_contract import ENV_RESUME_FROM, RESUME_AUTO, parse_checkpoint_name

from . import sharded
from . import storage as st
from .candidate import Checked, Read, load_sharded, prepare_engine
from .meta import FORMAT_DCP, FORMAT_REPLICATED, TrainerExtra
from .resume_timing import ResumeTiming
from .rng import seed_all
from .run_state import Context
from .snapshot import snapshot
from .state import (
    READ_FORMATS,
    check_model_shapes,
    check_optimizers,
    check_registered,
    common_object,
    deserialize,
    rank_object,
    restore_common,
    restore_rank,
)
from .termination import PermanentError

log = logging.getLogger("lazarus")


class Resumer:
    def __init__(self, ctx: Context) -> None:
        self.config = ctx.config
        self.dist = ctx.dist
        self.storage = ctx.storage
        self.registry = ctx.registry
        self.run = ctx.run
        self.timing = ResumeTiming()
        self.resumed_extra: dict[str, Any] = {}  # the resumed manifest's `extra`

    def resume(self, load: Callable[[str], bool] | None = None) -> str | None:
        """Restore everything from the configured pointer; returns the checkpoint used.

        `load` tries one candidate (False: it failed validation and was quarantined, so
        the next older one is tried); by default the registered objects are restored
        (`_try_load`). The HF adapter passes its own and shares the rest: the candidates,
        the fall-back, the refusal when none loads, and the attempt's fence record."""
        t0 = time.monotonic()
        timing = self.timing = ResumeTiming()
        if not self.config.resume_from:
            with timing.part("lookup"):
                self.refuse_used_root()
        name = self._resume(load or self._try_load)
        self.run.resume_seconds = time.monotonic() - t0 if name else None
        if self.dist.is_main:
            with timing.part("record"):
                self.storage.record_start(name, self.run.progress.step if name else -1)
        if name:
            timing.checkpoint = name
            log.info("%s", timing.line())
        return name

    def refuse_used_root(self) -> None:
        """A fresh start writes checkpoints named for its attempt: if the root already holds
        committed ones of this job (same namespace/name, or none when run by hand) and that
        attempt (a re-run, a re-created job told not to resume), its saves would collide
        with them ("already committed"). Refuse before training. Another job's checkpoints
        are its own lineage (contract section 8) and do not count."""
        cfg = self.config
        attempt, taken = cfg.attempt, ""
        if self.dist.is_main:
            mine = [
                c.name
                for c in self.storage.listing()
                if c.committed
                and c.manifest is not None
                and (c.manifest.job.namespace, c.manifest.job.name)
                == (cfg.job_namespace, cfg.job_name)
                and (parse_checkpoint_name(c.name) or (0, 0))[1] == attempt
            ]
            taken = mine[0] if mine else ""
        if self.dist.main_decides(bool(taken)):
            raise PermanentError(
                f"checkpoint root {self.storage.root_uri} already holds committed checkpoints "
                f"of attempt {attempt} (newest {taken or '?'}) and {ENV_RESUME_FROM} is empty: "
                f"set {ENV_RESUME_FROM}=auto to resume them, or use a new root (or a new "
                "attempt number) to start over"
            )

    def load_weights(self, name: str) -> None:
        """Only the models' weights of checkpoint `name` (`load_best`): the optimizer, RNGs
        and progress stay as they are. Checksums are verified as for a resume."""
        checked = self.check_manifest(name, explicit=True)
        fmt = checked.extra.format
        ours = common_object(fmt)
        common = deserialize(self.storage.read_bytes(name, ours), ours, fmt)
        reg = self.registry
        if checked.extra.model_optimizer == FORMAT_DCP:
            reader = sharded.StoreReader(
                lambda path, local: self.storage.download(name, path, local)
            )
            try:
                loaded: dict[str, Any] = snapshot(sharded.capture(reg))
                sharded.load(loaded, reader, self.dist.ckpt_group)
            finally:
                reader.cleanup()
            sharded.apply_models(reg, loaded)
            return
        for key, model in reg.models.items():
            check_model_shapes(key, model, common["models"][key])
            model.load_state_dict(common["models"][key])

    def candidates(self) -> list[str]:
        """The checkpoints to try in order: the pointer's, then older valid ones."""
        ptr = self.config.resume_from
        if not ptr:
            log.info("no resume pointer: starting fresh")
            return []
        valid = self.storage.committed()
        if ptr == RESUME_AUTO:
            if not valid:
                log.info("resume=auto: no valid checkpoint yet, starting fresh")
            return valid
        name = self.storage.resolve(ptr)
        self.check_manifest(name, explicit=True)
        return [name] + [n for n in valid if n < name]

    def _resume(self, load: Callable[[str], bool]) -> str | None:
        with self.timing.part("lookup"):
            candidates = self.candidates()
        if not candidates:
            return None
        for name in candidates:
            if load(name):
                return name
        raise PermanentError(
            f"no loadable checkpoint among {candidates[:5]}: all failed validation"
        )

    def check_manifest(self, name: str, explicit: bool) -> Checked:
        """`name`'s manifest, if it is this job's and in a format this trainer reads.

        An unreadable manifest is permanent for the pointer's checkpoint (`explicit`), else
        the InvalidCheckpoint is raised for the caller to fall back."""
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
        try:
            extra = TrainerExtra.parse(manifest, name, READ_FORMATS)
        except st.InvalidCheckpoint as exc:
            if explicit:
                raise PermanentError(f"resume pointer {name!r} is unusable: {exc}") from None
            raise
        return Checked(name, manifest, extra)

    def _try_load(self, name: str) -> bool:
        read = self._read(name)
        loaded: dict[str, Any] | None = None
        try:
            if not self.agree(name, read.error):
                return False
            if read.reader is not None:
                with self.timing.part("fetch"):
                    loaded, error = load_sharded(self.registry, self.dist, read.reader)
                if not self.agree(name, error):
                    return False
            assert read.checked is not None and read.common is not None  # every rank read it
            if read.engine is not None:
                with self.timing.part("restore"):
                    read.engine.apply()
        finally:
            if read.reader is not None:
                read.reader.cleanup()
            if read.engine is not None:
                read.engine.cleanup()
        with self.timing.part("restore"):
            self._apply(read.checked, read.common, read.rank_state, loaded)
        return True

    def _read(self, name: str) -> Read:
        """Fetch and check what this rank needs; a bad checkpoint is an error, not a raise."""
        read, timing = Read(), self.timing
        try:
            with timing.part("lookup"):
                checked = read.checked = self.check_manifest(name, explicit=False)
            fmt = checked.extra.format
            ours, mine = common_object(fmt), rank_object(self.dist.rank, fmt)
            with timing.part("fetch"):
                data = self.storage.read_buffer(name, ours, timing.reads)
            with timing.part("decode"):
                common = read.common = deserialize(data, ours, fmt)
                check_registered(self.registry, common, ours)
                if checked.extra.model_optimizer == FORMAT_REPLICATED:
                    check_optimizers(self.registry, common, ours)
            if checked.manifest.world_size == self.dist.world_size:
                with timing.part("fetch"):
                    data = self.storage.read_buffer(name, mine, timing.reads)
                with timing.part("decode"):
                    read.rank_state = deserialize(data, mine, fmt)
            if checked.extra.model_optimizer == FORMAT_DCP:
                reader = read.reader = sharded.StoreReader(
                    lambda path, local: self.storage.download(name, path, local)
                )
                meta = reader.read_metadata()
                names = common.get("sharded")
                if not isinstance(names, dict):
                    raise st.InvalidCheckpoint(f"{ours}: no sharded-state names")
                sharded.check_compatible(self.registry, names, meta)
            with timing.part("fetch"):
                read.engine = prepare_engine(self.registry, self.storage, checked)
        except (st.InvalidCheckpoint, st.CheckpointNotFound) as exc:
            read.error = str(exc)
        except BaseException:
            if read.reader is not None:
                read.reader.cleanup()  # a permanent error ends the run: leave no temp files
            raise
        return read

    def _apply(
        self,
        checked: Checked,
        common: dict[str, Any],
        rank_state: dict[str, Any] | None,
        loaded: dict[str, Any] | None,
    ) -> None:
        """Set what every rank read into the registered objects and the run."""
        if loaded is not None:
            sharded.apply(self.registry, loaded)
        run, dist = self.run, self.dist
        run.progress, run.user_state = restore_common(
            self.registry, common, model_optim=loaded is None
        )
        if rank_state is not None:
            restore_rank(rank_state, self.registry)
        else:
            seed = 1_000_003 * run.progress.step + dist.rank
            log.warning(
                "world size changed %s -> %d: per-rank RNG state cannot be resharded; "
                "rank %d RNGs reseeded with %d (model and optimizer %s)",
                checked.manifest.world_size,
                dist.world_size,
                dist.rank,
                seed,
                "resharded by torch.distributed.checkpoint"
                if loaded is not None
                else "restored exactly",
            )
            seed_all(seed)
        run.last_committed = (checked.name, checked.manifest.step)
        run.resumed_from = checked.name
        self.resumed_extra = checked.manifest.extra
        log.info("resumed from %s at step %d", checked.name, run.progress.step)

    def agree(self, name: str, error: str | None) -> bool:
        """All ranks accept the checkpoint, or it is quarantined and an older one is tried."""
        if self.dist.all_ok(error is None):
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
