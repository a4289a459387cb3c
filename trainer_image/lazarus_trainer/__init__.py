"""Lazarus trainer library: full-state checkpoints, graceful SIGTERM saves, exact resume.

What it holds (docs/trainer.md for the user's side):

- `api.Lazarus`, the facade training loops and the adapters call; the parts behind it
  share `run_state` (the run's state, and the `Context` each part is given);
- saving: `save_policy` (when and why: pure, no I/O), `save_pipeline` (capture, hand off,
  apply each outcome), `commit` (upload and commit on every rank), `saver` (the
  background thread and the typed save results), `retry`, `meta` (typed checkpoint
  metadata), `snapshot`, `sharded` (torch.distributed.checkpoint), `engine_state` (an
  engine's own files: DeepSpeed);
- stopping and resuming: `signals`, `stopping`, `termination`, `progress`, `requests`,
  `resumer`, `safe_load`;
- what a checkpoint holds: `state`, `rng`, `data`; settings: `config`; collectives:
  `distributed`; the store: `storage`;
- `adapters/` (Accelerate, HF `Trainer`, DeepSpeed), `reference/` (the reference trainer) and
  `launch` (exit codes under torchrun).

What it may import: the standard library, torch and numpy; `lazarus_contract` (the names
the operator and the trainer share); `lazarus_store` only through `storage.py` (and the
reference trainer its log redaction); accelerate and transformers only in `adapters/` and
`reference/`, deepspeed only in `adapters/deepspeed.py`. Never `lazarus_operator`: the two
sides meet only in the contract.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .api import Lazarus
    from .config import LazarusConfig
    from .data import ResumableSampler
    from .termination import PermanentError, leave, leaving

# Imported on first use: `lazarus-launch` (lazarus_trainer.launch) supervises torchrun and
# needs none of torch, whose import cost it ~5 s and ~700 MB in every pod it started.
_LAZY = {
    "Lazarus": ".api",
    "LazarusConfig": ".config",
    "ResumableSampler": ".data",
    "PermanentError": ".termination",
    "leave": ".termination",
    "leaving": ".termination",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["Lazarus", "LazarusConfig", "PermanentError", "ResumableSampler", "leave", "leaving"]
