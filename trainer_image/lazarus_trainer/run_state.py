"""What the parts behind the `Lazarus` facade share: `RunState`, this process's run (where
training is, what is committed and resumed, how it ends), and `Context`, the settings,
collectives, store and registered objects each part is given.

One `RunState` object, so a resume that replaces `progress` is seen by the save pipeline
and the stop handling alike.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from . import storage as st
from .config import LazarusConfig
from .distributed import Collectives
from .state import Progress, Registry
from .termination import Termination


@dataclass
class StepClock:
    """This attempt's training pace: steps per second of wall time from the end of its
    first step on, so process start, resume and the first step's warm-up are left out.
    Recorded with each save (contract section 4a): the operator estimates from it what
    an attempt lost when its node vanished and nothing could report."""

    first: tuple[int, float] | None = None  # (step, time.monotonic()) after the first step

    def tick(self, step: int, now: float) -> None:
        if self.first is None:
            self.first = (step, now)

    def rate(self, step: int, now: float) -> float | None:
        if self.first is None:
            return None
        s0, t0 = self.first
        return (step - s0) / (now - t0) if step > s0 and now > t0 else None


@dataclass
class RunState:
    progress: Progress = field(default_factory=Progress)
    user_state: dict[str, Any] = field(default_factory=dict)
    step_metrics: dict[str, float] = field(default_factory=dict)  # recorded with the next save
    last_committed: tuple[str, int] | None = None  # (name, step)
    resumed_from: str | None = None
    resume_seconds: float | None = None  # the resume's load time, recorded in manifests
    should_stop: bool = False
    termination: Termination | None = None  # set once the run's end is known
    failed_saves: list[str] = field(default_factory=list)
    clock: StepClock = field(default_factory=StepClock)

    @property
    def parent(self) -> str | None:
        """The checkpoint a new one follows in the lineage."""
        return self.last_committed[0] if self.last_committed else None

    def preempted(
        self, message: str, *, saved_on_signal: bool = False, grace_shortfall: bool = False
    ) -> Termination:
        """End this run as preempted at the current step (exit 75)."""
        self.termination = Termination(
            "preempted",
            self.progress.step,
            self.last_committed,
            message,
            saved_on_signal=saved_on_signal,
            grace_shortfall=grace_shortfall,
        )
        return self.termination


@dataclass(frozen=True)
class Context:
    """One process's settings, collectives, store, registered objects and run."""

    config: LazarusConfig
    dist: Collectives
    storage: st.Storage
    registry: Registry
    run: RunState
