"""Lazarus trainer library: full-state checkpoints, graceful SIGTERM saves, exact resume."""

from .api import Lazarus
from .config import LazarusConfig
from .data import ResumableSampler
from .termination import PermanentError

__all__ = ["Lazarus", "LazarusConfig", "PermanentError", "ResumableSampler"]
