"""Model and optimizer state through torch.distributed.checkpoint (DCP), stored via the store.

Used when torch.distributed runs with more than one process: every rank writes its own shard
objects (`dcp/__<rank>_0.distcp`; the coordinator adds `dcp/.metadata`) under the checkpoint
prefix and rank 0 commits them all. `get_state_dict`/`set_state_dict` make this work for DDP
(replicated, deduplicated by DCP) and FSDP2 `fully_shard` (DTensor shards) alike, and DCP's
load planner reshards to whatever world size loads it.

Saving stages through a local directory (DCP's `FileSystemWriter`), then uploads each file
with the store, which checksums it. Loading fetches only the files this rank's read plan
touches, each verified against the manifest's CRC32C as it downloads. Loading never runs
code: `.metadata` is unpickled against an allow-list of DCP's metadata classes, and the
non-tensor items (optimizer hyperparameters) are read with `torch.load(weights_only=True)`.
"""

from __future__ import annotations

import io
import pathlib
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
import torch.distributed.checkpoint.metadata as dcp_metadata
from torch.distributed.checkpoint._traverse import set_element
from torch.distributed.checkpoint.api import CheckpointException
from torch.distributed.checkpoint.default_planner import DefaultLoadPlanner
from torch.distributed.checkpoint.filesystem import FileSystemReader, FileSystemWriter, _StorageInfo
from torch.distributed.checkpoint.metadata import (
    BytesStorageMetadata,
    ChunkStorageMetadata,
    Metadata,
    StorageMeta,
    TensorStorageMetadata,
)
from torch.distributed.checkpoint.planner import LoadPlan, LoadPlanner, ReadItem
from torch.distributed.checkpoint.state_dict import (
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)
from torch.distributed.checkpoint.state_dict_loader import load as dcp_load
from torch.distributed.checkpoint.state_dict_saver import save as dcp_save
from torch.futures import Future

from lazarus_contract.bounded_json import one_line

from .safe_load import load_plain, require_plain, restricted_load
from .state import Registry
from .storage import CheckpointNotFound, InvalidCheckpoint
from .termination import PermanentError

DCP_PREFIX = "dcp/"
METADATA_FILE = ".metadata"

# What DCP's `.metadata` pickle may name: its metadata dataclasses, torch.Size, dtypes and
# layouts, and the path it was saved at. Looked up here, never imported by name.
METADATA_GLOBALS: dict[tuple[str, str], Any] = {
    **{
        (dcp_metadata.__name__, n): getattr(dcp_metadata, n)
        for n in (
            "Metadata",
            "MetadataIndex",
            "StorageMeta",
            "TensorProperties",
            "TensorStorageMetadata",
            "BytesStorageMetadata",
            "ChunkStorageMetadata",
            "_MEM_FORMAT_ENCODING",
        )
    },
    (_StorageInfo.__module__, "_StorageInfo"): _StorageInfo,
    ("torch", "Size"): torch.Size,
    ("torch.serialization", "_get_layout"): torch.serialization._get_layout,
    ("pathlib", "PosixPath"): pathlib.PosixPath,
    ("pathlib._local", "PosixPath"): pathlib.PosixPath,  # Python 3.13+
    **{("torch", n): v for n, v in vars(torch).items() if isinstance(v, torch.dtype)},
}


def _model_for(reg: Registry, opt_name: str, opt: Any) -> torch.nn.Module:
    """The registered model whose parameters this optimizer updates."""
    if len(reg.models) == 1:
        return next(iter(reg.models.values()))
    ids = {id(p) for g in getattr(opt, "param_groups", []) for p in g["params"]}
    for model in reg.models.values():
        if any(id(p) in ids for p in model.parameters()):
            return model
    raise PermanentError(f"optimizer {opt_name!r} updates none of the registered models")


def _optimizers(reg: Registry) -> Iterator[tuple[str, torch.nn.Module, torch.optim.Optimizer]]:
    """Each registered optimizer with its model: DCP's state-dict API takes torch optimizers."""
    for name, opt in reg.optimizers.items():
        if not isinstance(opt, torch.optim.Optimizer):
            raise PermanentError(
                f"optimizer {name!r} is a {type(opt).__name__}, not a torch.optim.Optimizer: "
                "sharded saves (torch.distributed.checkpoint) need one"
            )
        yield name, _model_for(reg, name, opt), opt


def capture(reg: Registry) -> dict[str, Any]:
    """This rank's model and optimizer state dicts (references; DTensor shards under FSDP2)."""
    state = {
        "models": {k: get_model_state_dict(m) for k, m in reg.models.items()},
        "optimizers": {k: get_optimizer_state_dict(m, o) for k, m, o in _optimizers(reg)},
    }
    require_plain(state, "sharded state")
    return state


def apply_models(reg: Registry, state: dict[str, Any]) -> None:
    for k, m in reg.models.items():
        set_model_state_dict(m, state["models"][k])


def apply(reg: Registry, state: dict[str, Any]) -> None:
    apply_models(reg, state)
    for k, m, o in _optimizers(reg):
        set_optimizer_state_dict(m, o, state["optimizers"][k])


def names(reg: Registry) -> dict[str, list[str]]:
    return {"models": sorted(reg.models), "optimizers": sorted(reg.optimizers)}


@contextmanager
def staged(state: dict[str, Any], group: Any) -> Iterator[list[Path]]:
    """Write this rank's DCP files to a local directory (a collective: every rank calls it)."""
    d = Path(tempfile.mkdtemp(prefix="lazarus-dcp-"))
    try:
        writer = FileSystemWriter(d, single_file_per_rank=True, sync_files=False)
        dcp_save(state, storage_writer=writer, process_group=group)
        yield sorted(p for p in d.iterdir() if p.is_file())
    finally:
        shutil.rmtree(d, ignore_errors=True)


class StoreReader(FileSystemReader):
    """A `FileSystemReader` whose files are fetched (verified) from the store on first use."""

    def __init__(self, fetch: Callable[[str, Path], None]) -> None:
        self._dir = Path(tempfile.mkdtemp(prefix="lazarus-dcp-load-"))
        super().__init__(self._dir)
        self._fetch = fetch

    def _need(self, rel: str) -> None:
        if not rel or "/" in rel or "\\" in rel or rel in (".", ".."):
            raise InvalidCheckpoint(f"DCP metadata names a file outside dcp/: {rel!r}")
        local = self._dir / rel
        if local.exists():
            return
        part = local.with_name(local.name + ".part")
        self._fetch(DCP_PREFIX + rel, part)
        part.rename(local)

    def read_metadata(self, *args: Any, **kwargs: Any) -> Metadata:
        """DCP's own reader unpickles `.metadata` unrestricted; this one uses the allow-list."""
        self._need(METADATA_FILE)
        data = (self._dir / METADATA_FILE).read_bytes()
        meta = restricted_load(data, METADATA_GLOBALS, DCP_PREFIX + METADATA_FILE)
        if not isinstance(meta, Metadata) or not isinstance(meta.storage_data, dict):
            raise InvalidCheckpoint(f"{DCP_PREFIX}{METADATA_FILE}: not DCP metadata")
        why = _malformed(meta)
        if why:
            raise InvalidCheckpoint(f"{DCP_PREFIX}{METADATA_FILE}: malformed: {why}")
        if getattr(meta, "storage_meta", None) is None:
            meta.storage_meta = StorageMeta()
        assert meta.storage_meta is not None
        meta.storage_meta.load_id = self.load_id
        return meta

    def read_data(self, plan: LoadPlan, planner: LoadPlanner) -> Future[None]:
        for rel in sorted({self.storage_data[i.storage_index].relative_path for i in plan.items}):
            self._need(rel)
        try:  # local files only from here: any failure is the files' (an item of the
            return super().read_data(plan, planner)  # wrong size, bytes that do not load)
        except (InvalidCheckpoint, CheckpointNotFound):
            raise
        except Exception as exc:
            why = one_line(f"{type(exc).__name__}: {exc}", 200)
            raise InvalidCheckpoint(f"{DCP_PREFIX}: shard data does not load ({why})") from None

    def cleanup(self) -> None:
        shutil.rmtree(self._dir, ignore_errors=True)


def check_compatible(reg: Registry, saved_names: dict[str, list[str]], meta: Metadata) -> None:
    """Fail fast (permanent) on different registrations or model shapes, before any load."""
    for kind, have in (("model", reg.models), ("optimizer", reg.optimizers)):
        saved = saved_names[f"{kind}s"]
        if sorted(have) != saved:
            raise PermanentError(
                f"checkpoint has {kind}s {saved}, this run registers {sorted(have)}"
            )
    md = meta.state_dict_metadata
    for name, model in reg.models.items():
        current = get_model_state_dict(model)
        prefix = f"models.{name}."
        saved_keys = {k[len(prefix) :] for k in md if k.startswith(prefix)}
        missing = sorted(set(current) - saved_keys)
        unexpected = sorted(saved_keys - set(current))
        if missing or unexpected:
            raise PermanentError(
                f"checkpoint model {name!r} does not match this model: "
                f"missing keys {missing[:5]}, unexpected keys {unexpected[:5]}"
            )
        for key, tensor in current.items():
            item = md[prefix + key]
            if (
                isinstance(item, TensorStorageMetadata)
                and isinstance(tensor, torch.Tensor)
                and tuple(item.size) != tuple(tensor.shape)
            ):
                raise PermanentError(
                    f"checkpoint model {name!r} is incompatible: {key} has shape "
                    f"{tuple(item.size)} in the checkpoint, {tuple(tensor.shape)} in this model"
                )


class SafeLoadPlanner(DefaultLoadPlanner):
    """DCP's default planner, but non-tensor items load with `weights_only=True`.

    The default `torch.load`s them with `weights_only=False`; ours are optimizer
    hyperparameters (numbers, tuples, strings), which need nothing more.
    """

    def create_local_plan(self) -> LoadPlan:
        """DCP's plan, once every item this rank loads is in the checkpoint with its kind
        and shape: DCP's own planner raises a ValueError for a size that differs."""
        assert self.metadata is not None
        md = self.metadata.state_dict_metadata
        for key, have in self.state_dict.items():
            item = md.get(key)
            if item is None or isinstance(have, torch.Tensor) != isinstance(
                item, TensorStorageMetadata
            ):
                raise InvalidCheckpoint(f"DCP item {key}: missing, or not what this run has")
            if isinstance(item, TensorStorageMetadata) and tuple(item.size) != tuple(have.shape):
                raise InvalidCheckpoint(
                    f"DCP item {key}: shape {tuple(item.size)}, this run's {tuple(have.shape)}"
                )
        return super().create_local_plan()

    def load_bytes(self, read_item: ReadItem, value: io.BytesIO) -> None:
        fqn = read_item.dest_index.fqn
        obj = load_plain(value, f"DCP item {fqn}")
        have = self.state_dict.get(fqn)
        if _kind(obj) != _kind(have) and None not in (obj, have):
            raise InvalidCheckpoint(
                f"DCP item {fqn}: a {type(obj).__name__} where this run has a {type(have).__name__}"
            )
        if self.flatten_state_dict:
            set_element(self.original_state_dict, self.mappings[fqn], obj)
        else:
            self.state_dict[fqn] = obj


def _kind(x: Any) -> str:
    """What a non-tensor item is, loosely: an int and a float are both numbers."""
    if isinstance(x, bool):
        return "bool"
    if isinstance(x, int | float):
        return "number"
    return "sequence" if isinstance(x, list | tuple) else type(x).__name__


def _ints(x: Any, n: int | None = None) -> bool:
    return (
        isinstance(x, tuple)
        and (n is None or len(x) == n)
        and all(type(d) is int and 0 <= d < 1 << 63 for d in x)
    )


def _malformed(meta: Metadata) -> str | None:
    """Why DCP's planner could not work from `meta` (None: it can): checked here, because
    a planning failure is not told from a failing peer, a shard's is."""
    for info in meta.storage_data.values():
        if not isinstance(info, _StorageInfo) or not isinstance(info.relative_path, str):
            return "a storage entry is not a file"
        if not _ints((info.offset, info.length)):
            return f"storage entry {info.relative_path[:60]!r} has a bad offset or length"
    md = meta.state_dict_metadata
    if not isinstance(md, dict) or not all(isinstance(k, str) for k in md):
        return "state_dict_metadata is not a dict of names"
    for key, item in md.items():
        if isinstance(item, BytesStorageMetadata):
            continue
        if not isinstance(item, TensorStorageMetadata) or not _ints(item.size):
            return f"{key[:80]}: not a tensor of a valid size"
        if not isinstance(getattr(item.properties, "dtype", None), torch.dtype):
            return f"{key[:80]}: no dtype"
        for c in item.chunks if isinstance(item.chunks, list) else [None]:
            n = len(item.size)
            if not (isinstance(c, ChunkStorageMetadata) and _ints(c.offsets, n)):
                return f"{key[:80]}: a chunk is malformed"
            if not _ints(c.sizes, n) or any(
                o + z > d for o, z, d in zip(c.offsets, c.sizes, item.size, strict=True)
            ):
                return f"{key[:80]}: a chunk lies outside the tensor"
    return None


def load(target: dict[str, Any], reader: StoreReader, group: Any) -> None:
    """Load into `target` (copies shaped for this world size; a collective when distributed).

    DCP reports any rank's failure on every rank as a `CheckpointException`, a BaseException
    that `except Exception` misses: a bad checkpoint comes out as the store error inside it.
    """
    try:
        dcp_load(target, storage_reader=reader, planner=SafeLoadPlanner(), process_group=group)
    except CheckpointException as exc:
        for e in failures(exc):
            if isinstance(e, InvalidCheckpoint | CheckpointNotFound):
                raise e from None
        raise RuntimeError(f"torch.distributed.checkpoint load failed: {exc}") from None


def failures(exc: BaseException) -> list[BaseException]:
    """The per-rank exceptions inside a DCP `CheckpointException` (or the exception itself)."""
    inner = getattr(exc, "failures", None)
    if isinstance(inner, dict):
        out: list[BaseException] = []
        for v in inner.values():
            e = v[0] if isinstance(v, tuple) else v  # DCP keeps (exception, traceback)
            out.extend(failures(e) if isinstance(e, BaseException) else [])
        return out or [exc]
    out = [exc]
    if exc.__cause__ is not None:
        out.extend(failures(exc.__cause__))
    return out
