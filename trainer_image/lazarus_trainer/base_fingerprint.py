"""The frozen base's fingerprint: what a resume must find unchanged when a checkpoint does
not (or need not) carry the frozen weights again.

A model with frozen parameters (a PEFT model's base, frozen embeddings) is fingerprinted once
at setup, before any resume loads into it: every state-dict entry that is not a trainable
parameter (frozen parameters and buffers) by name, shape, dtype and SHA-256 of its bytes
(SHA-NI runs at ~1.7 GB/s a core; tensors hash on threads, hashlib releases the GIL). Every
checkpoint records it as the extra `frozen_base`; a resume whose model's fingerprint differs is
refused (exit 78) naming what differs, not quarantined: the checkpoint is sound, the base is not
the one it was trained on. Checkpoints without one (older, or of a model with nothing frozen)
load as before.
"""

from __future__ import annotations

import hashlib
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import torch

from lazarus_contract.bounded_json import one_line

from .state import Registry
from .termination import PermanentError

log = logging.getLogger("lazarus")

KEY = "frozen_base"  # the extra's name in every checkpoint
VERSION = 1
THREADS = 4


@dataclass(frozen=True)
class Entry:
    shape: tuple[int, ...]
    dtype: str
    sha256: str


Print = dict[str, Entry]  # one model's fingerprint, by state-dict key


def trainable(model: torch.nn.Module) -> set[str]:
    """The names of parameters that train (tied ones under every name)."""
    named = model.named_parameters(remove_duplicate=False)
    return {n for n, p in named if p.requires_grad}


def has_frozen(model: torch.nn.Module) -> bool:
    return any(not p.requires_grad for p in model.parameters())


def frozen_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The state-dict entries that are not trainable parameters: frozen ones and buffers."""
    train = trainable(model)
    return {
        k: v
        for k, v in model.state_dict().items()
        if isinstance(v, torch.Tensor) and k not in train
    }


def _digest(t: torch.Tensor) -> str:
    flat = t.detach().reshape(-1)
    if flat.device.type != "cpu":
        flat = flat.cpu()
    h = hashlib.sha256()
    if flat.numel():
        h.update(flat.contiguous().view(torch.uint8).numpy().data)
    return h.hexdigest()


def fingerprint(tensors: dict[str, torch.Tensor]) -> Print:
    names = list(tensors)
    with ThreadPoolExecutor(THREADS) as pool:
        digests = list(pool.map(_digest, (tensors[n] for n in names)))
    return {
        n: Entry(tuple(tensors[n].shape), str(tensors[n].dtype).removeprefix("torch."), d)
        for n, d in zip(names, digests, strict=True)
    }


def to_plain(fp: Print) -> list[list[Any]]:
    return [[n, list(e.shape), e.dtype, e.sha256] for n, e in fp.items()]


def from_plain(rows: Any) -> Print | None:
    """A saved fingerprint, or None when it is not one (a malformed checkpoint)."""
    if not isinstance(rows, list | tuple):
        return None
    out: Print = {}
    for row in rows:
        if not (isinstance(row, list | tuple) and len(row) == 4):
            return None
        name, shape, dtype, digest = row
        if not (isinstance(name, str) and isinstance(dtype, str) and isinstance(digest, str)):
            return None
        if not (isinstance(shape, list | tuple) and all(type(s) is int for s in shape)):
            return None
        out[name] = Entry(tuple(shape), dtype, digest)
    return out


def difference(saved: Print, now: Print) -> str | None:
    """What differs between the checkpoint's frozen base and this model's, in one line."""
    gone = [n for n in saved if n not in now]
    new = [n for n in now if n not in saved]
    both = [n for n in saved if n in now]
    shape = [n for n in both if saved[n].shape != now[n].shape]
    dtype = [n for n in both if saved[n].dtype != now[n].dtype and n not in shape]
    content = [n for n in both if saved[n].sha256 != now[n].sha256 and n not in shape + dtype]
    total = len(gone) + len(new) + len(shape) + len(dtype) + len(content)
    if not total:
        return None
    if gone:
        first = f"{gone[0]} is frozen in the checkpoint's base but not in this model"
    elif new:
        first = f"{new[0]} is frozen in this model but not in the checkpoint's base"
    elif shape:
        n = shape[0]
        first = f"{n} has shape {list(saved[n].shape)} there, {list(now[n].shape)} here"
    elif dtype:
        first = f"{dtype[0]} is {saved[dtype[0]].dtype} there, {now[dtype[0]].dtype} here"
    else:
        n = content[0]
        there, here = saved[n].sha256[:12], now[n].sha256[:12]
        first = f"{n} holds other values (sha256 {there} there, {here} here)"
    return one_line(f"{first}; {total} of {len(saved)} frozen tensors differ", 400)


class FrozenBase:
    """The registered models' frozen-base fingerprints, as a checkpoint extra."""

    def __init__(self) -> None:
        self.models: dict[str, Print] = {}

    def add(self, key: str, model: torch.nn.Module) -> None:
        """Fingerprint `model` if it has frozen parameters (once: at setup)."""
        if key in self.models or not has_frozen(model):
            return
        tensors = frozen_state(model)
        if any(type(t).__name__ == "DTensor" for t in tensors.values()):
            log.info("model %r is sharded (DTensor): its frozen base is not fingerprinted", key)
            return
        t0 = time.monotonic()
        self.models[key] = fingerprint(tensors)
        size = sum(t.numel() * t.element_size() for t in tensors.values())
        log.info(
            "frozen base of model %r fingerprinted: %d tensors, %.1f MiB in %.2f s",
            key,
            len(tensors),
            size / 2**20,
            time.monotonic() - t0,
        )

    def state_dict(self) -> dict[str, Any]:
        return {"version": VERSION, "models": {k: to_plain(v) for k, v in self.models.items()}}

    def load_state_dict(self, state: dict[str, Any], /) -> None:
        pass  # compared before anything loads (check_state)

    def check_state(self, saved: Any) -> str | None:
        """Why the saved fingerprint is malformed (the checkpoint is quarantined), or None;
        a different base raises PermanentError: no older checkpoint of the job fits it either."""
        if not isinstance(saved, dict) or saved.get("version") != VERSION:
            return "is not a frozen-base fingerprint of a known version"
        models = saved.get("models")
        if not isinstance(models, dict):
            return "is not a frozen-base fingerprint of a known version"
        for key, now in self.models.items():
            if key not in models:
                continue  # written when this model had nothing frozen: its weights are all there
            then = from_plain(models[key])
            if then is None:
                return f"of model {key!r} is malformed"
            why = difference(then, now)
            if why:
                raise PermanentError(
                    f"the checkpoint was trained on another frozen base than model {key!r} "
                    f"holds: {why}. Load the base weights the job started with, or start over "
                    "on a new checkpoint root"
                )
        return None


def note_frozen(reg: Registry) -> None:
    """Fingerprint the registered models' frozen bases (register()'s hook) and record them
    in every checkpoint."""
    base = reg.extras.get(KEY)
    if not isinstance(base, FrozenBase):
        base = FrozenBase()
    for key, model in reg.models.items():
        if isinstance(model, torch.nn.Module):
            base.add(key, model)
    if base.models:
        reg.extras[KEY] = base
