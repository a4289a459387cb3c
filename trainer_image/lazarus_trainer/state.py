"""What a checkpoint holds, split into the replicated part (written once) and the per-rank part."""

from __future__ import annotations

import io
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import torch

from lazarus_contract.bounded_json import one_line

from .engine_state import EngineState
from .rng import capture_rng, restore_rng
from .safe_load import load_plain, require_plain
from .storage import InvalidCheckpoint
from .tensorread import unpack
from .termination import PermanentError

log = logging.getLogger(__name__)

# 3: the raw tensor layout (tensorfile.py: safetensors' layout, no pickle), objects named
# `.safetensors`. 2: torch.save pickles of tensors and plain values, loaded with
# weights_only=True and no allow-list. 1: as 2 with pickled numpy RNG objects. 1 and 2
# are still read (`.pt` objects).
FORMAT_VERSION = 3
READ_FORMATS = (1, 2, 3)
RAW_FORMAT = 3
PICKLE_FORMAT = 2  # what `serialize` writes


def _ext(fmt: int) -> str:
    return "safetensors" if fmt >= RAW_FORMAT else "pt"


def common_object(fmt: int = FORMAT_VERSION) -> str:
    return f"trainer/common.{_ext(fmt)}"


def rank_object(rank: int, fmt: int = FORMAT_VERSION) -> str:
    return f"trainer/rank-{rank:05d}.{_ext(fmt)}"


COMMON_OBJECT = common_object()


@runtime_checkable
class Stateful(Protocol):
    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any], /) -> Any: ...


@dataclass
class Progress:
    """Counters that say where training is; saved with every checkpoint."""

    step: int = 0
    epoch: int = 0
    samples_seen: int = 0
    tokens_seen: int = 0
    best_metric: float | None = None
    best_step: int | None = None
    metrics_history: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["metrics_history"] = [
            {k: _plain_metric(v) for k, v in row.items()} for row in self.metrics_history
        ]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Progress:
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


def _plain_metric(v: Any) -> Any:
    """numpy scalars and 0-d tensors from user metrics become floats (a plain value loads)."""
    if v is None or type(v) in (int, float, bool, str):
        return v
    try:
        return float(v)
    except (TypeError, ValueError):
        return v  # require_plain names it


@dataclass
class Registry:
    """The objects whose state determines the rest of the run."""

    models: dict[str, torch.nn.Module] = field(default_factory=dict)
    optimizers: dict[str, Stateful] = field(default_factory=dict)
    schedulers: dict[str, Stateful] = field(default_factory=dict)
    scaler: Stateful | None = None
    sampler: Stateful | None = None
    extras: dict[str, Stateful] = field(default_factory=dict)
    # Model and optimizer saved by an engine as its own files (DeepSpeed ZeRO), not above.
    engine: EngineState | None = None
    # Who saves the data position when no sampler is registered (HF Trainer's own state).
    data_owner: str | None = None
    # State that differs per rank, saved in each rank's object (read back by the adapter
    # that registers it: HF Trainer's RNG state before a batch fetched ahead).
    rank_extras: dict[str, Stateful] = field(default_factory=dict)
    # Checks run at each lz.step() before it counts: PermanentError where this is no
    # step boundary (Accelerate: a gradient accumulation micro-step).
    step_checks: list[Callable[[], None]] = field(default_factory=list)


def capture_common(
    reg: Registry, progress: Progress, user: dict[str, Any], *, model_optim: bool = True
) -> dict[str, Any]:
    """State identical on every rank (DDP replicas): references, not copies.

    `model_optim=False`: models and optimizers are saved sharded (sharded.py), not here.
    """
    state = {
        "format": FORMAT_VERSION,
        "models": {k: m.state_dict() for k, m in reg.models.items()} if model_optim else {},
        "optimizers": {k: o.state_dict() for k, o in reg.optimizers.items()} if model_optim else {},
        "schedulers": {k: s.state_dict() for k, s in reg.schedulers.items()},
        "scaler": reg.scaler.state_dict() if reg.scaler is not None else None,
        "sampler": reg.sampler.state_dict() if reg.sampler is not None else None,
        "extras": {k: e.state_dict() for k, e in reg.extras.items()},
        "progress": progress.to_dict(),
        "user": user,
    }
    require_plain(state, "checkpoint state")
    return state


def capture_rank(extras: dict[str, Stateful] | None = None) -> dict[str, Any]:
    state = {"format": FORMAT_VERSION, "rng": capture_rng()}
    if extras:
        state["extras"] = {k: e.state_dict() for k, e in extras.items()}
    return state


def serialize(obj: Any) -> bytes:
    """Format 2's pickle (torch.save): no longer written by saves, kept to build old-format
    checkpoints in tests and tools."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def deserialize(data: bytes | bytearray, what: str, fmt: Any = PICKLE_FORMAT) -> dict[str, Any]:
    """A trainer object of format `fmt` (the manifest's; by default `serialize`'s), never
    running code: the raw layout (format 3, tensors viewed out of `data` without copies)
    or restricted unpickling (formats 1 and 2, see safe_load).

    Checksums do not make the bytes trusted (whoever writes an object writes its manifest);
    a refused or malformed payload raises InvalidCheckpoint, so the checkpoint is quarantined.
    """
    if fmt == RAW_FORMAT:
        state = unpack(data if isinstance(data, bytearray) else bytearray(data), what)
    else:
        state = load_plain(bytes(data), what, legacy_numpy=fmt == 1)
    if not isinstance(state, dict) or state.get("format") not in READ_FORMATS:
        raise InvalidCheckpoint(f"{what}: not a Lazarus trainer state of a known format")
    # A well-formed payload of the wrong shape would crash the restore (a crash loop,
    # not a fallback): check what restore_common/restore_rank index before they do.
    is_common = what.startswith("trainer/common.")
    wanted = _COMMON_SHAPE if is_common else _RANK_SHAPE if "/rank-" in what else {}
    for key, types in wanted.items():
        if not isinstance(state.get(key), types):
            raise InvalidCheckpoint(f"{what}: malformed trainer state ({key!r} missing or wrong)")
    try:
        if is_common:
            _check_common_values(state)
        elif wanted:
            _check_rng(state["rng"])
    except (LookupError, TypeError, ValueError, RuntimeError, AttributeError, OverflowError) as exc:
        why = one_line(f"{type(exc).__name__}: {exc}", 200)
        raise InvalidCheckpoint(f"{what}: malformed trainer state ({why})") from None
    return state


def _is_int(x: Any, low: int = 0) -> bool:
    return type(x) is int and low <= x < 1 << 63


def _check_common_values(state: dict[str, Any]) -> None:
    """What restore indexes below the top level: model tensors, the progress counters."""
    for name, sd in state["models"].items():
        for key, value in sd.items() if isinstance(sd, dict) else [("", None)]:
            # A module's get_extra_state() may be any plain value; everything else a tensor.
            if not isinstance(key, str) or not (
                isinstance(value, torch.Tensor) or key.endswith("_extra_state")
            ):
                raise ValueError(f"model {one_line(repr(name), 40)} entry {key!r:.60} is no tensor")
    for kind in ("optimizers", "schedulers", "extras"):
        if not all(isinstance(v, dict) for v in state[kind].values()):
            raise ValueError(f"a value of {kind!r} is not a dict")
    p = state["progress"]
    for key in ("step", "epoch", "samples_seen", "tokens_seen"):
        if key in p and not _is_int(p[key]):
            raise ValueError(f"progress {key} is not a non-negative integer")
    best, best_step = p.get("best_metric"), p.get("best_step")
    if best is not None and (isinstance(best, bool) or not isinstance(best, int | float)):
        raise ValueError("progress best_metric is not a number")
    if best_step is not None and not _is_int(best_step):
        raise ValueError("progress best_step is not a non-negative integer")
    history = p.get("metrics_history", [])
    if not isinstance(history, list) or not all(isinstance(r, dict) for r in history):
        raise ValueError("progress metrics_history is not a list of dicts")


def _check_rng(saved: Any) -> None:
    """Restore `saved` once and put the current RNGs back: what cannot be restored raises
    here, before the checkpoint is chosen, not after (a crash, not a fall-back)."""
    if not isinstance(saved, dict):
        raise TypeError("rng is not a dict")
    now = capture_rng()
    try:
        restore_rng(saved)
    finally:
        restore_rng(now)


def check_registered(reg: Registry, state: dict[str, Any], what: str) -> None:
    """A registered sampler or extra that can tell (`check_state(saved) -> why | None`)
    says whether its saved state loads, before the checkpoint is chosen."""
    pairs = [(reg.sampler, state["sampler"], "sampler")]
    pairs += [(e, state["extras"].get(k), f"extra {k!r}") for k, e in reg.extras.items()]
    for obj, saved, label in pairs:
        check = getattr(obj, "check_state", None)
        why = check(saved) if check is not None and saved is not None else None
        if why:
            raise InvalidCheckpoint(f"{what}: {label} state {why}")


def check_optimizers(reg: Registry, state: dict[str, Any], what: str) -> None:
    """Each registered torch optimizer's saved state has the shape `load_state_dict`
    indexes (InvalidCheckpoint) and this optimizer's groups (PermanentError, as a model of
    another shape): checked before anything is loaded."""
    for name, opt in reg.optimizers.items():
        saved = state["optimizers"].get(name)
        if not isinstance(opt, torch.optim.Optimizer) or saved is None:
            continue  # not a torch optimizer, or not saved: restore_common says so
        groups, per_param = saved.get("param_groups"), saved.get("state")
        if not (
            isinstance(groups, list)
            and isinstance(per_param, dict)
            and all(isinstance(g, dict) and isinstance(g.get("params"), list) for g in groups)
            and all(_is_int(i) for g in groups for i in g["params"])
            and all(_is_int(k) and isinstance(v, dict) for k, v in per_param.items())
        ):
            raise InvalidCheckpoint(f"{what}: optimizer {name!r} state is malformed")
        have = [len(g["params"]) for g in opt.param_groups]
        if [len(g["params"]) for g in groups] != have:
            raise PermanentError(
                f"checkpoint optimizer {name!r} does not match this optimizer: its groups "
                f"have {[len(g['params']) for g in groups][:8]} parameters, this one's {have[:8]}"
            )


_COMMON_SHAPE: dict[str, tuple[type, ...]] = {
    "schedulers": (dict,),
    "extras": (dict,),
    "progress": (dict,),
    "models": (dict,),
    "optimizers": (dict,),
    "scaler": (dict, type(None)),
    "sampler": (dict, type(None)),
}
_RANK_SHAPE: dict[str, tuple[type, ...]] = {"rng": (dict, list, tuple)}


def check_model_shapes(name: str, model: torch.nn.Module, saved: dict[str, Any]) -> None:
    """Fail fast, naming the first mismatch, before anything is half-loaded."""
    current = model.state_dict()
    missing = sorted(set(current) - set(saved))
    unexpected = sorted(set(saved) - set(current))
    if missing or unexpected:
        raise PermanentError(
            f"checkpoint model {name!r} does not match this model: "
            f"missing keys {missing[:5]}, unexpected keys {unexpected[:5]}"
        )
    for key, tensor in current.items():
        other = saved[key]
        if isinstance(tensor, torch.Tensor) and tuple(other.shape) != tuple(tensor.shape):
            raise PermanentError(
                f"checkpoint model {name!r} is incompatible: {key} has shape "
                f"{tuple(other.shape)} in the checkpoint, {tuple(tensor.shape)} in this model"
            )


def restore_common(
    reg: Registry, state: dict[str, Any], *, model_optim: bool = True
) -> tuple[Progress, dict[str, Any]]:
    """Load the replicated state; `model_optim=False`: models/optimizers were loaded sharded."""
    if state.get("format") not in READ_FORMATS:
        raise PermanentError(f"unknown trainer state format {state.get('format')!r}")
    kinds: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
        ("scheduler", dict(reg.schedulers), state["schedulers"])
    ]
    if model_optim:
        kinds += [
            ("model", dict(reg.models), state["models"]),
            ("optimizer", dict(reg.optimizers), state["optimizers"]),
        ]
    for kind, have, saved in kinds:
        if set(have) != set(saved):
            raise PermanentError(
                f"checkpoint has {kind}s {sorted(saved)}, this run registers {sorted(have)}"
            )
    for name, model in reg.models.items() if model_optim else ():
        check_model_shapes(name, model, state["models"][name])
        model.load_state_dict(state["models"][name])
    for name, opt in reg.optimizers.items() if model_optim else ():
        opt.load_state_dict(state["optimizers"][name])
    for name, sched in reg.schedulers.items():
        sched.load_state_dict(state["schedulers"][name])
    if reg.scaler is not None and state["scaler"] is not None:
        reg.scaler.load_state_dict(state["scaler"])
    if reg.sampler is not None and state["sampler"] is not None:
        reg.sampler.load_state_dict(state["sampler"])
    for name, extra in reg.extras.items():
        if name in state["extras"]:
            extra.load_state_dict(state["extras"][name])
    return Progress.from_dict(state["progress"]), state.get("user", {})


def restore_rank(state: dict[str, Any], reg: Registry | None = None) -> None:
    """This rank's RNG, then its registered per-rank extras (which may read the RNG just
    restored: rng.FetchRng arms itself with it)."""
    restore_rng(state["rng"])
    saved = state.get("extras")
    for name, extra in (reg.rank_extras if reg is not None else {}).items():
        if isinstance(saved, dict) and name in saved:
            extra.load_state_dict(saved[name])
