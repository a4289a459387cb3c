"""The run's state as `Lazarus` shows it: read by users' code, and set by adapters,
through properties over the shared `RunState` and the save pipeline."""

from __future__ import annotations

from typing import Any

from .run_state import RunState
from .save_pipeline import SavePipeline
from .saver import BackgroundSaver
from .signals import SaveTimer
from .state import Progress
from .termination import Termination


class RunStateAccess:
    """Properties of the facade over `self.run` and `self.pipeline` (set by `Lazarus`)."""

    run: RunState
    pipeline: SavePipeline

    @property
    def progress(self) -> Progress:
        return self.run.progress

    @progress.setter
    def progress(self, value: Progress) -> None:
        self.run.progress = value

    @property
    def user_state(self) -> dict[str, Any]:
        """Plain values saved with every checkpoint and restored on resume."""
        return self.run.user_state

    @user_state.setter
    def user_state(self, value: dict[str, Any]) -> None:
        self.run.user_state = value

    @property
    def last_committed(self) -> tuple[str, int] | None:
        """(name, step) of the newest checkpoint this run committed or resumed from."""
        return self.run.last_committed

    @last_committed.setter
    def last_committed(self, value: tuple[str, int] | None) -> None:
        self.run.last_committed = value

    @property
    def resumed_from(self) -> str | None:
        return self.run.resumed_from

    @resumed_from.setter
    def resumed_from(self, value: str | None) -> None:
        self.run.resumed_from = value

    @property
    def should_stop(self) -> bool:
        """True once every rank agreed to stop (a signal, or fenced out): leave the loop."""
        return self.run.should_stop

    @should_stop.setter
    def should_stop(self, value: bool) -> None:
        self.run.should_stop = value

    @property
    def termination(self) -> Termination | None:
        """How the run ends, once that is known."""
        return self.run.termination

    @termination.setter
    def termination(self, value: Termination | None) -> None:
        self.run.termination = value

    @property
    def failed_saves(self) -> list[str]:
        return self.run.failed_saves

    @property
    def sharded(self) -> bool:
        """Model and optimizer saved through torch.distributed.checkpoint (more than one
        process); an adapter that needs them replicated sets it False."""
        return self.pipeline.sharded

    @sharded.setter
    def sharded(self, value: bool) -> None:
        self.pipeline.sharded = value

    @property
    def saver(self) -> BackgroundSaver:
        return self.pipeline.saver

    @property
    def timer(self) -> SaveTimer:
        return self.pipeline.timer
