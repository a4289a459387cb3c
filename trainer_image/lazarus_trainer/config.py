"""Trainer settings: from the operator's environment (docs/contract.md section 2), overridable."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from lazarus_contract import (
    ENV_ATTEMPT,
    ENV_CHECKPOINT_URI,
    ENV_EVAL_METRIC,
    ENV_EVAL_MODE,
    ENV_GRACE_SECONDS,
    ENV_KEEP_BEST,
    ENV_KEEP_LATEST,
    ENV_RESUME_FROM,
    ENV_SAVE_EVERY_SECONDS,
    ENV_SAVE_EVERY_STEPS,
)
from lazarus_contract.identity import JobIdentity
from lazarus_contract.interval import (
    DEFAULT_MAX_SECONDS,
    DEFAULT_MIN_SECONDS,
    ENV_SAVE_AUTO,
    ENV_SAVE_AUTO_MAX_SECONDS,
    ENV_SAVE_AUTO_MIN_SECONDS,
)

from .termination import PermanentError

# Not set by the operator: the user's switch (docs/trainer.md). "0" leaves SIGTERM/SIGINT to
# Python's default, so a stop ends the process at once with no preemption save: how a
# trainer without Lazarus's handler behaves (a PyTorchJob running HF Trainer), for
# comparisons such as bench/goodput.py.
ENV_HANDLE_SIGNALS = "LAZARUS_HANDLE_SIGNALS"


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    try:
        return int(raw) if raw else default
    except ValueError:
        raise PermanentError(f"{name}={raw!r} is not an integer") from None


def _env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise PermanentError(f"{name}={raw!r} is not a boolean (1/0, true/false)")


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    try:
        return float(raw) if raw else default
    except ValueError:
        raise PermanentError(f"{name}={raw!r} is not a number") from None


@dataclass
class LazarusConfig:
    checkpoint_uri: str = ""
    resume_from: str = ""  # "" fresh, "auto" newest valid, else a name or URI
    attempt: int = 1
    job_name: str = ""
    job_namespace: str = ""
    job_uid: str = ""
    grace_seconds: float = 30.0
    save_every_steps: int = 0
    save_every_seconds: float = 0.0
    save_auto: bool = False  # the automatic interval (autointerval.py) replaces the schedule
    save_auto_min_seconds: float = DEFAULT_MIN_SECONDS  # ... within these bounds
    save_auto_max_seconds: float = DEFAULT_MAX_SECONDS
    eval_metric: str = ""
    eval_mode: str = "min"
    keep_latest: int = 0  # 0: no pruning by the trainer
    keep_best: int = 0
    async_save: bool = True
    save_at_end: bool = True
    save_retries: int = 4  # attempts per save in the background before it is re-queued
    retry_backoff: float = 0.5  # seconds, doubled per try
    handle_signals: bool = True
    # The background save's CPU: at most `save_threads` I/O threads (each checksums and sends
    # one part at a time), run `save_nice` steps nicer than training, which keeps its cores.
    # Synchronous saves (training waits anyway) use the store's full concurrency.
    save_threads: int = 2
    save_nice: int = 10
    extra: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_env(cls, **overrides: object) -> LazarusConfig:
        job = JobIdentity.from_env(os.environ)  # the operator's (contract section 2)
        cfg = cls(
            checkpoint_uri=os.environ.get(ENV_CHECKPOINT_URI, ""),
            resume_from=os.environ.get(ENV_RESUME_FROM, "").strip(),
            attempt=_env_int(ENV_ATTEMPT, 1),
            job_name=job.name,
            job_namespace=job.namespace,
            job_uid=job.uid,
            grace_seconds=_env_float(ENV_GRACE_SECONDS, 30.0),
            save_every_steps=_env_int(ENV_SAVE_EVERY_STEPS, 0),
            save_every_seconds=_env_float(ENV_SAVE_EVERY_SECONDS, 0.0),
            save_auto=_env_bool(ENV_SAVE_AUTO, False),
            save_auto_min_seconds=_env_float(ENV_SAVE_AUTO_MIN_SECONDS, DEFAULT_MIN_SECONDS),
            save_auto_max_seconds=_env_float(ENV_SAVE_AUTO_MAX_SECONDS, DEFAULT_MAX_SECONDS),
            eval_metric=os.environ.get(ENV_EVAL_METRIC, ""),
            eval_mode=os.environ.get(ENV_EVAL_MODE, "") or "min",
            keep_latest=_env_int(ENV_KEEP_LATEST, 0),
            keep_best=_env_int(ENV_KEEP_BEST, 0),
            handle_signals=_env_bool(ENV_HANDLE_SIGNALS, True),
        )
        for key, value in overrides.items():
            if value is None:
                continue
            if not hasattr(cfg, key):
                raise TypeError(f"unknown Lazarus setting {key!r}")
            setattr(cfg, key, value)
        if cfg.eval_mode not in ("min", "max"):
            raise PermanentError(f"{ENV_EVAL_MODE} must be 'min' or 'max', got {cfg.eval_mode!r}")
        if not cfg.checkpoint_uri:
            raise PermanentError(f"{ENV_CHECKPOINT_URI} is not set: nowhere to save checkpoints")
        return cfg
