"""Lazarus for DeepSpeed engines (ZeRO stages 0-3): `from_deepspeed(engine, ...)`.

DeepSpeed's `save_checkpoint` writes each rank's ZeRO partition (and the model states) as
files in a directory, with no commit marker or checksum, and without the torch RNG or the
data position (so a resume with dropout is not exact). Here those files become objects of
one Lazarus checkpoint: at the step boundary every rank runs `save_checkpoint` with a
checkpoint engine that serializes each file into memory (no copy on local disk), the save
pipeline uploads them (checksummed) with the rest, and rank 0 commits once every rank wrote.
RNG, data position and counters are Lazarus' own. `lz.step()` where the engine holds
gradients no optimizer step applied yet (a gradient accumulation micro-step, or before
`engine.step()`) is refused (exit 78): a checkpoint there would drop them.

Loading never runs code: DeepSpeed's own engine `torch.load`s with `weights_only=False`.
Here every file this rank needs is downloaded (CRC32C verified) and unpickled with
`torch.load(weights_only=True)`, admitting besides tensors and plain values only the four
DeepSpeed classes its ZeRO files name (`DS_GLOBALS`: two loss scalers, the ZeRO stage enum,
a fragment address dataclass), looked up here, never imported by name. Only when every
rank read and checked its files does `engine.load_checkpoint` run, fed those objects.

Same world size only: ZeRO partitions are laid out for the data-parallel world that wrote
them. Another world size needs DeepSpeed's universal checkpoint (`ds_to_universal`), whose
converter and loader unpickle with `weights_only=False`; Lazarus refuses that (exit 78)
with a message naming the supported path (docs/trainer.md). The checkpoint engines and
the file loader are in deepspeed_files.py.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import deepspeed
import torch

from lazarus_contract.bounded_json import loads_bounded, one_line

from ..api import Lazarus
from ..config import LazarusConfig
from ..engine_state import Fetch
from ..meta import FORMAT_DEEPSPEED, ModelOptimizerFormat
from ..safe_load import load_plain
from ..state import Stateful
from ..storage import InvalidCheckpoint, Manifest
from ..termination import PermanentError
from .deepspeed_files import (
    DS_GLOBALS,
    PREFIX,
    CaptureEngine,
    LoadEngine,
    Swapped,
    load_file,
)

log = logging.getLogger("lazarus")

__all__ = [
    "DS_GLOBALS",
    "INFO_OBJECT",
    "PREFIX",
    "TAG",
    "UNIVERSAL_HINT",
    "DeepSpeedState",
    "accumulating",
    "from_deepspeed",
    "load_file",
]

INFO_OBJECT = PREFIX + "lazarus-deepspeed.json"  # rank 0: stage, world size, versions
TAG = "lazarus"  # DeepSpeed's checkpoint tag: the Lazarus checkpoint name says the rest

# A file of one data-parallel rank: `zero_pp_rank_3_mp_rank_00_optim_states.pt` and
# (ZeRO-3) `zero_pp_rank_3_mp_rank_00_model_states.pt`.
_RANK_FILE = re.compile(r"(?:^|_)pp_rank_(\d+)_")
_FILE_NAME = re.compile(r"[A-Za-z0-9_.-]+\.pt")

UNIVERSAL_HINT = (
    "resume with the world size that wrote it; to change the world size, convert a copy "
    "you trust offline with DeepSpeed's ds_to_universal (--inject_missing_state for ZeRO "
    "1 and 2) and start a new run from it with checkpoint.load_universal"
)


def accumulating(engine: Any) -> str | None:
    """The gradients `engine` holds that no optimizer step applied yet, in words (None: none,
    as far as its counters tell). Boundaries set by the caller (`set_gradient_accumulation_
    boundary`, ZenFlow) leave only `DeepSpeedState.at_step`'s optimizer-step count to tell."""
    managed = getattr(engine, "managed_gradient_accumulation", lambda: True)
    if not managed():  # every engine.step() is a boundary; backward() accumulates
        n = int(getattr(engine, "_unmanaged_backward_count", 0))
        return f"{n} backward pass(es) since the last engine.step()" if n else None
    if getattr(engine, "_is_gradient_accumulation_boundary", None) is not None or getattr(
        engine, "zenflow", False
    ):
        return None
    gas, micro = int(engine.gradient_accumulation_steps()), int(engine.micro_steps)
    if micro % gas:
        return f"{micro % gas} of gradient_accumulation_steps={gas} micro-batches accumulated"
    return None


class DeepSpeedState:
    """A DeepSpeed engine's model, optimizer and LR scheduler as Lazarus objects."""

    layout: ModelOptimizerFormat = FORMAT_DEEPSPEED

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self._checked = False  # the first capture proves its files load back
        # The engine's optimizer steps at the last lz.step() (or at creation, or the resume).
        self.global_steps = int(getattr(engine, "global_steps", 0))

    def at_step(self) -> None:
        """`lz.step()`: refuse (exit 78) a step the engine cannot be saved at. A checkpoint
        between accumulation boundaries would drop the gradients accumulated so far, and
        a resume would go on as if those micro-batches had been trained on."""
        held = accumulating(self.engine)
        if held is not None:
            raise PermanentError(
                f"lz.step() was called on a gradient accumulation micro-step ({held}): call "
                "it once per optimizer step, after the engine.step() that applies it (when "
                "engine.is_gradient_accumulation_boundary() was True before that engine.step())"
            )
        steps = int(self.engine.global_steps)
        if steps == self.global_steps:
            raise PermanentError(
                "lz.step() was called with no optimizer step since the last lz.step() or the "
                f"resume (engine.global_steps is still {steps}): call it once per optimizer "
                "step, after the engine.step() that applies it"
            )
        self.global_steps = steps

    @property
    def stage(self) -> int:
        return int(self.engine.zero_optimization_stage())

    @property
    def dp_rank(self) -> int:
        group = getattr(self.engine.optimizer, "dp_process_group", None)
        return int(deepspeed.comm.get_rank(group=group))

    def _info(self) -> dict[str, Any]:
        return {
            "stage": self.stage,
            "worldSize": int(deepspeed.comm.get_world_size()),
            "deepspeed": deepspeed.__version__,
            "tag": TAG,
        }

    # --- saving --------------------------------------------------------------------------
    def capture(self) -> dict[str, bytes]:
        """Every rank: DeepSpeed's `save_checkpoint` (a collective), its files in memory."""
        cap = CaptureEngine()
        scratch = Path(tempfile.mkdtemp(prefix="lazarus-ds-"))  # DeepSpeed copies scripts here
        try:
            with Swapped(self.engine, cap):
                self.engine.save_checkpoint(str(scratch), tag=TAG, save_latest=False)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        files = {PREFIX + name: data for name, data in cap.files.items()}
        if not self._checked:
            self._check_loadable(files)
        if self.engine.global_rank == 0:
            files[INFO_OBJECT] = json.dumps(self._info(), sort_keys=True).encode()
        return files

    def _check_loadable(self, files: dict[str, bytes]) -> None:
        """Refuse (exit 78) to write files that the loader would refuse: a DeepSpeed setting
        that pickles another class would otherwise quarantine every checkpoint of the run.
        Checked on the first save only; later saves hold the same structure."""
        for path, data in files.items():
            try:
                with torch.serialization.safe_globals(DS_GLOBALS):
                    load_plain(data, path)
            except InvalidCheckpoint as exc:
                raise PermanentError(
                    f"DeepSpeed's {path} could not be loaded back without running code ({exc}); "
                    "Lazarus admits only tensors, plain values and "
                    f"{[c.__qualname__ for c in DS_GLOBALS]}"
                ) from None
        self._checked = True

    # --- loading -------------------------------------------------------------------------
    def prepare(self, manifest: Manifest, fetch: Fetch) -> _Prepared:
        """Fetch and check this rank's files; nothing in the engine changes yet."""
        world = int(deepspeed.comm.get_world_size())
        if manifest.world_size != world:
            raise PermanentError(
                f"checkpoint {manifest.name} was written by {manifest.world_size} DeepSpeed "
                f"processes, this run has {world}: ZeRO partitions load only onto the world "
                f"size that wrote them. {UNIVERSAL_HINT}"
            )
        d = Path(tempfile.mkdtemp(prefix="lazarus-ds-load-"))
        try:
            return self._prepare(manifest, fetch, d)
        except BaseException:
            shutil.rmtree(d, ignore_errors=True)
            raise

    def _prepare(self, manifest: Manifest, fetch: Fetch, d: Path) -> _Prepared:
        paths = sorted(o.path for o in manifest.objects if o.path.startswith(PREFIX))
        if INFO_OBJECT not in paths:
            raise InvalidCheckpoint(f"{manifest.name}: no {INFO_OBJECT}")
        fetch(INFO_OBJECT, d / "info.json")
        try:
            info = loads_bounded((d / "info.json").read_bytes(), max_bytes=1 << 20, max_depth=4)
            saved_stage = info["stage"] if isinstance(info, dict) else None
            if saved_stage not in (0, 1, 2, 3) or type(saved_stage) is not int:
                raise ValueError(f"stage {one_line(repr(saved_stage), 40)} is not 0-3")
        except ValueError as exc:  # MalformedJSON is one
            raise InvalidCheckpoint(f"{INFO_OBJECT}: unreadable ({exc})") from None
        if saved_stage != self.stage:
            raise PermanentError(
                f"checkpoint {manifest.name} was written with ZeRO stage {saved_stage}, this "
                f"engine runs stage {self.stage}: resume with the same ZeRO stage"
            )
        files = d / TAG  # DeepSpeed globs the model-states files here
        files.mkdir()
        objects: dict[str, Any] = {}
        every = self.engine.zero_elastic_checkpoint() if self.stage in (1, 2) else False
        for path in paths:
            name = path[len(PREFIX) :]
            if path == INFO_OBJECT:
                continue
            if not _FILE_NAME.fullmatch(name):
                raise InvalidCheckpoint(f"{manifest.name}: unexpected DeepSpeed object {path!r}")
            m = _RANK_FILE.search(name)
            if m and int(m.group(1)) != self.dp_rank and not every:
                continue  # another rank's partition
            fetch(path, files / name)
            objects[name] = load_file(files / name, path)
            self._check_shape(objects[name], path)
        return _Prepared(self, d, objects, manifest.name)

    def _check_shape(self, obj: Any, path: str) -> None:
        """What DeepSpeed's `load_checkpoint` indexes, checked before it runs (it would fail
        halfway, past the fall-back): InvalidCheckpoint. Model tensors of other shapes are
        another model (PermanentError, as for any model); a ZeRO partition of another size,
        with model, stage and world size the same, is a malformed file (InvalidCheckpoint)."""
        if not isinstance(obj, dict):
            raise InvalidCheckpoint(f"{path}: not a DeepSpeed state dict")
        if "model_states" in path:
            module = obj.get("module")
            counts = [obj.get(k) for k in ("dp_world_size", "mp_world_size", "global_steps")]
            if not isinstance(module, dict) or not all(type(c) is int for c in counts):
                raise InvalidCheckpoint(f"{path}: malformed DeepSpeed model states")
            if not all(
                isinstance(k, str) and isinstance(t, torch.Tensor) for k, t in module.items()
            ):
                raise InvalidCheckpoint(f"{path}: model states hold a non-tensor")
            if self.stage < 3:  # ZeRO-3 partitions the module's parameters too
                live = self.engine.module.state_dict()
                for k, t in module.items():
                    if k in live and tuple(t.shape) != tuple(live[k].shape):
                        raise PermanentError(
                            f"{path}: {k} has shape {tuple(t.shape)}, this model "
                            f"{tuple(live[k].shape)}: resume with the model that wrote it"
                        )
        if "optim_states" in path:
            sd = obj.get("optimizer_state_dict")
            if not isinstance(sd, dict):
                raise InvalidCheckpoint(f"{path}: malformed DeepSpeed optimizer states")
            saved = sd.get("single_partition_of_fp32_groups")
            ours = getattr(self.engine.optimizer, "single_partition_of_fp32_groups", None)
            if saved is not None and ours is not None:
                sizes = (
                    [t.numel() if isinstance(t, torch.Tensor) else -1 for t in saved]
                    if isinstance(saved, list)
                    else [-1]
                )
                if sizes != [t.numel() for t in ours]:
                    raise InvalidCheckpoint(
                        f"{path}: ZeRO partitions of {sizes[:4]} elements, this rank holds "
                        f"{[t.numel() for t in ours][:4]}"
                    )


class _Prepared:
    """This rank's checked DeepSpeed files, loaded into the engine by `apply`."""

    def __init__(self, state: DeepSpeedState, d: Path, objects: dict[str, Any], name: str) -> None:
        self.state, self.engine = state, state.engine
        self.dir, self.objects, self.name = d, objects, name

    def apply(self) -> None:
        try:
            with Swapped(self.engine, LoadEngine(self.objects)):
                path, _ = self.engine.load_checkpoint(str(self.dir), tag=TAG)
        except PermanentError:
            raise
        except Exception as exc:
            raise PermanentError(
                f"DeepSpeed could not load checkpoint {self.name} into this engine "
                f"(a different model or configuration?): {type(exc).__name__}: {exc}"
            ) from None
        if path is None:
            raise PermanentError(f"DeepSpeed found no model states in checkpoint {self.name}")
        self.state.global_steps = int(self.engine.global_steps)  # the checkpoint's
        log.info("DeepSpeed engine loaded from %s (%d files)", self.name, len(self.objects))

    def cleanup(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)
        self.objects = {}


def from_deepspeed(
    engine: Any,
    *,
    sampler: Stateful | None = None,
    scheduler: Stateful | None = None,
    extras: dict[str, Stateful] | None = None,
    config: LazarusConfig | None = None,
) -> Lazarus:
    """A `Lazarus` for an engine from `deepspeed.initialize` (create it after initialize).

    The engine's model, optimizer and the LR scheduler it was given are saved through
    DeepSpeed's own files; pass `scheduler` only for one you step yourself."""
    lz = Lazarus(config)
    lz.register(scheduler=scheduler, sampler=sampler, extras=extras)
    lz.registry.engine = DeepSpeedState(engine)
    lz.sharded = False  # model and optimizer are the engine's files, not DCP shards
    return lz
