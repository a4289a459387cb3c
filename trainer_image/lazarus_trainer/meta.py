"""Typed checkpoint metadata: what a save records (`SaveMeta`) and the trainer's part of
a manifest (`TrainerExtra`, `extra.lazarusTrainer`), parsed once where it is read.

`TrainerExtra.parse` is the one place that reads `extra.lazarusTrainer` back: past it the
trainer format and the model/optimizer layout are known values, not dict lookups.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from lazarus_contract.bounded_json import one_line
from lazarus_contract.timings import EXTRA_TIMINGS, EXTRA_TRAINER, Timings

from .storage import InvalidCheckpoint, Manifest
from .termination import PermanentError

ModelOptimizerFormat = Literal["dcp", "replicated", "deepspeed"]
FORMAT_DCP: ModelOptimizerFormat = "dcp"  # torch.distributed.checkpoint shards (sharded.py)
FORMAT_REPLICATED: ModelOptimizerFormat = "replicated"  # rank 0's trainer/common.pt holds them
FORMAT_DEEPSPEED: ModelOptimizerFormat = "deepspeed"  # an engine's own files (engine_state.py)
LAYOUTS: tuple[ModelOptimizerFormat, ...] = (FORMAT_DCP, FORMAT_REPLICATED, FORMAT_DEEPSPEED)

EXTRA_KEY = EXTRA_TRAINER


@dataclass(frozen=True)
class SaveMeta:
    """One save's facts, fixed when the state is captured at the step boundary."""

    step: int
    epoch: int
    samples_seen: int
    tokens_seen: int
    metrics: dict[str, float]
    reason: str
    model_optimizer: ModelOptimizerFormat
    captured_at: float  # time.monotonic() when the capture began
    stall_seconds: float  # how long training waited for the capture
    steps_per_second: float | None = None  # the attempt's pace so far (run_state.StepClock)
    schedule: dict[str, float] = field(default_factory=dict)  # the automatic interval's facts


@dataclass(frozen=True)
class SaveTimings:
    """Save and resume timings (contract section 4): the operator exports them as metrics.

    Measured up to the commit, which the manifest itself ends."""

    stall_seconds: float
    save_seconds: float
    durable_seconds: float
    bytes: int
    attempt: int
    resume_seconds: float | None = None  # the load of this attempt's resume, if it resumed
    steps_per_second: float | None = None
    schedule: dict[str, float] = field(default_factory=dict)  # autointerval.AutoSchedule.facts

    @classmethod
    def measure(
        cls,
        meta: SaveMeta,
        *,
        write_start: float,
        now: float,
        nbytes: int,
        attempt: int,
        resume_seconds: float | None,
    ) -> SaveTimings:
        return cls(
            stall_seconds=meta.stall_seconds,
            save_seconds=meta.stall_seconds + now - write_start,
            durable_seconds=now - meta.captured_at,
            bytes=nbytes,
            attempt=attempt,
            resume_seconds=resume_seconds,
            steps_per_second=meta.steps_per_second,
            schedule=meta.schedule,
        )

    def to_json(self) -> dict[str, float | int]:
        """The contract's encoding (lazarus_contract.timings), with the schedule's facts."""
        out = Timings(
            stall_seconds=self.stall_seconds,
            save_seconds=self.save_seconds,
            durable_seconds=self.durable_seconds,
            bytes=self.bytes,
            attempt=self.attempt,
            resume_seconds=self.resume_seconds,
            steps_per_second=self.steps_per_second,
        ).encode()
        out.update(self.schedule)
        return out


@dataclass(frozen=True)
class TrainerExtra:
    """`extra.lazarusTrainer` of a manifest."""

    format: int  # the trainer objects' format (state.FORMAT_VERSION when written)
    world_size: int | None
    model_optimizer: ModelOptimizerFormat
    timings: dict[str, Any] = field(default_factory=dict)

    def to_extra(self) -> dict[str, Any]:
        return {
            EXTRA_KEY: {
                "format": self.format,
                "worldSize": self.world_size,
                "modelOptimizer": self.model_optimizer,
                EXTRA_TIMINGS: self.timings,
            }
        }

    @classmethod
    def parse(cls, manifest: Manifest, name: str, read_formats: tuple[int, ...]) -> TrainerExtra:
        """The trainer's part of `name`'s manifest; an unknown format is permanent (exit 78)."""
        raw = manifest.extra.get(EXTRA_KEY) or {}
        if not isinstance(raw, dict):
            raw = {}
        fmt, raw_layout = raw.get("format"), raw.get("modelOptimizer", FORMAT_REPLICATED)
        if type(fmt) is not int or not isinstance(raw_layout, str):  # a bool is no format
            raise InvalidCheckpoint(
                f"checkpoint {name}: malformed {EXTRA_KEY} (format {one_line(repr(fmt), 40)}, "
                f"modelOptimizer {one_line(repr(raw_layout), 40)})"
            )
        # A well-formed format or layout this trainer does not know: a newer trainer wrote
        # it, and falling back past it would lose its work silently.
        if fmt not in read_formats:
            raise PermanentError(f"checkpoint {name} has unknown trainer format {fmt!r}")
        layout = next((x for x in LAYOUTS if x == raw_layout), None)
        if layout is None:
            raise PermanentError(
                f"checkpoint {name} has unknown model/optimizer format {one_line(raw_layout, 60)!r}"
            )
        world = raw.get("worldSize")
        if type(world) is not int or world < 1:
            world = manifest.world_size
        timings = raw.get(EXTRA_TIMINGS)
        return cls(
            format=fmt,
            world_size=world,
            model_optimizer=layout,
            timings=timings if isinstance(timings, dict) else {},
        )
