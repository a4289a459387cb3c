"""Fault-tolerant replica groups: torchft's Manager behind the `Lazarus` API.

On when the operator sets LAZARUS_FT_LIGHTHOUSE (docs/fault-tolerance.md). Each replica
group is one torchft replica: the lighthouse forms a quorum of the live groups every step,
gradients are averaged across the quorum (torchft's DDP), and the optimizer steps only
when the step commits. A group that joins behind the others (a replacement) receives the
live state from a healthy peer: models, optimizers, schedulers, scaler, data position,
extras, Lazarus' counters and user state; not a checkpoint. Its RNG is reseeded from
(group, step), so groups never draw the same dropout masks.

One group writes the durable checkpoints: the one with participating rank 0 (the lowest
live group) at the step. Under a majority quorum only one quorum can commit a step, so two
groups never save the same step; a lower minimum needs one lighthouse at a time.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import torch
from torch.distributed import TCPStore  # type: ignore[attr-defined]

from lazarus_contract import OUTCOME_ERROR
from lazarus_contract.ft import (
    ENV_FT_GROUPS,
    ENV_FT_LIGHTHOUSE,
    ENV_FT_MIN_GROUPS,
    ENV_FT_REPLACEMENT,
    ENV_FT_REPLICA_GROUP,
    check_min_groups,
    majority,
)

from .ft_watch import QuorumWatch
from .rng import seed_all
from .save_policy import Act
from .state import capture_common, restore_common
from .termination import PermanentError, Termination, write_termination

if TYPE_CHECKING:
    from .distributed import Collectives
    from .run_state import RunState
    from .state import Registry

log = logging.getLogger("lazarus")
_STORES: list[Any] = []

# Seconds torchft waits for a quorum, and times it retries one (a lighthouse restart).
QUORUM_TIMEOUT_S = 60.0
QUORUM_RETRIES = 10


@dataclass(frozen=True)
class FtSettings:
    lighthouse: str
    group: int
    groups: int
    min_groups: int
    replacement: bool

    @classmethod
    def from_env(cls, env: dict[str, str]) -> FtSettings | None:
        """None when the mode is off; PermanentError names a bad setting."""
        lighthouse = env.get(ENV_FT_LIGHTHOUSE, "").strip()
        if not lighthouse:
            return None
        nums: dict[str, int] = {}
        for name in (ENV_FT_REPLICA_GROUP, ENV_FT_GROUPS, ENV_FT_MIN_GROUPS):
            raw = env.get(name, "").strip()
            if not raw and name == ENV_FT_MIN_GROUPS:
                continue
            try:
                nums[name] = int(raw)
            except ValueError:
                raise PermanentError(f"{name}={raw!r} is not an integer") from None
        groups, group = nums[ENV_FT_GROUPS], nums[ENV_FT_REPLICA_GROUP]
        min_groups = nums.get(ENV_FT_MIN_GROUPS, majority(max(groups, 1)))
        why = check_min_groups(groups, min_groups)
        if why is None and not 0 <= group < groups:
            why = f"{ENV_FT_REPLICA_GROUP}={group} must be between 0 and {groups - 1}"
        if why is not None:
            raise PermanentError(why)
        replacement = env.get(ENV_FT_REPLACEMENT, "").strip().lower() in ("1", "true", "yes")
        return cls(lighthouse, group, groups, min_groups, replacement)


class FaultTolerance:
    """One replica group's torchft Manager, wired to Lazarus' registry and run state."""

    def __init__(
        self, settings: FtSettings, registry: Registry, run: RunState, dist: Collectives
    ) -> None:
        from torchft import Manager, ProcessGroupGloo  # the optional extra: lazarus[ft]

        self.settings = settings
        self.registry = registry
        self.run = run
        self.healed_at: int | None = None  # the step this group took from a peer
        self.heal_seconds: float | None = None
        self._store = self._group_store(dist)
        self.manager = Manager(
            pg=ProcessGroupGloo(timeout=timedelta(seconds=10)),
            load_state_dict=self._load_live,
            state_dict=self._live_state,
            min_replica_size=settings.min_groups,
            replica_id=f"{settings.group:05d}",  # sorts as the group index: rank 0 = lowest
            lighthouse_addr=settings.lighthouse,
            store_addr=self._store[0],
            store_port=self._store[1],
            rank=dist.rank,
            world_size=dist.world_size,
            timeout=timedelta(seconds=10),
            quorum_timeout=timedelta(seconds=QUORUM_TIMEOUT_S),
            connect_timeout=timedelta(seconds=10),
            quorum_retries=int(os.environ.get("TORCHFT_QUORUM_RETRIES", QUORUM_RETRIES)),
        )
        self._seen_step = int(self.manager.current_step())
        self.watch = QuorumWatch()  # the survivors' stall and the quorum's rejoin per failure

    @staticmethod
    def _group_store(dist: Collectives) -> tuple[str, int]:
        """The group's TCPStore: torchrun's, else one of this (single-process) group's own.
        MASTER_ADDR/PORT name a live store only in a torch world (torchrun's agent, or
        init_process_group's): the operator sets them on every pod, and a plain process
        that dialed them would wait for a store nobody serves."""
        in_world = dist.active or "TORCHELASTIC_RUN_ID" in os.environ
        if in_world and "MASTER_ADDR" in os.environ and "MASTER_PORT" in os.environ:
            return os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"])
        store = TCPStore("127.0.0.1", 0, is_master=True, wait_for_workers=False)
        _STORES.append(store)  # the server lives as long as the process
        return "127.0.0.1", int(store.port)

    # --- the live state a peer hands to a replacement -------------------------------------
    def _live_state(self) -> dict[str, Any]:
        return {"common": capture_common(self.registry, self.run.progress, self.run.user_state)}

    def _load_live(self, state: dict[str, Any]) -> None:
        t0 = time.monotonic()
        progress, user = restore_common(self.registry, state["common"])
        self.run.progress, self.run.user_state = progress, user
        self.reseed()
        self.healed_at = progress.step
        self.heal_seconds = time.monotonic() - t0
        log.info(
            "replica group %d took the live state of step %d from a peer",
            self.settings.group,
            progress.step,
        )

    def reseed(self) -> None:
        """Distinct, reproducible RNG streams per group (a peer's would repeat its masks)."""
        seed_all(hash((self.settings.group, self.run.progress.step)) & 0x7FFF_FFFF)

    # --- the training loop's side ---------------------------------------------------------
    def wrap_model(self, model: torch.nn.Module) -> torch.nn.Module:
        from torchft import DistributedDataParallel

        wrapped: torch.nn.Module = DistributedDataParallel(self.manager, model)
        return wrapped

    def wrap_optimizer(self, optimizer: torch.optim.Optimizer) -> Any:
        """torchft's optimizer wrapper: `zero_grad()` joins the step's quorum, `step()`
        applies the update only if the step commits and says whether it did (step the LR
        scheduler only then, so every group's schedule stays at the committed step)."""
        from torchft.optim import OptimizerWrapper

        class Committing(OptimizerWrapper):  # type: ignore[misc]
            def step(self, closure: object | None = None) -> bool:
                assert closure is None, "optimizers that use closures are not supported"
                committed = bool(self.manager.should_commit())
                if committed:
                    self.optim.step()
                return committed

        return Committing(self.manager, optimizer)

    def participation(self) -> tuple[int | None, int]:
        """(participating rank or None, participants) of the step in progress."""
        return self.manager.participating_rank(), self.manager.num_participants()

    def step_committed(self) -> bool:
        """Whether the step since the last call committed (the optimizer stepped)."""
        if getattr(self.manager, "_quorum_future", True) is None:  # no zero_grad() joined one
            raise PermanentError(
                "fault-tolerant mode: lz.step() before any quorum; wrap the optimizer with "
                "lz.ft.wrap_optimizer() and call its zero_grad() each step"
            )
        now = int(self.manager.current_step())
        committed, self._seen_step = now != self._seen_step, now
        if committed:
            self.watch.commit(time.monotonic(), int(self.manager.num_participants()))
        return committed

    def is_writer(self) -> bool:
        """This group writes the durable checkpoint of the step just committed."""
        return bool(self.manager.participating_rank() == 0)

    def not_writer(self, act: Act) -> bool:
        """True where this group is not the writer and the step's save or stop is handled
        here: a save is the writer's, a stop ends this group without one (exit 75)."""
        if act not in (Act.SAVE, Act.STOP, Act.STOP_AFTER_EVAL) or self.is_writer():
            return False
        if act is not Act.SAVE:
            self.run.should_stop = True
            self.run.preempted(
                f"stopped at step {self.run.progress.step}; replica group "
                f"{self.settings.group} is not the writer: its peers hold the state"
            )
        return True

    def after_resume(self) -> None:
        """Resumed from a checkpoint (a whole-job restart): the quorum starts at its step."""
        p = self.run.progress
        self.manager.load_state_dict({"step": p.step, "batches_committed": p.step})
        self._seen_step = p.step
        self.reseed()

    def check_joined(self) -> None:
        """A replacement that committed a step without taking a peer's state found no live
        peer: its state would start over. Said at the first committed step."""
        if self.settings.replacement and self.healed_at is None:
            raise NoLivePeer(
                f"replica group {self.settings.group} was started as a replacement but no "
                "live peer had state to give: restart the whole job from its checkpoint",
                self.run.progress.step,
            )

    def shutdown(self) -> None:
        self.manager.shutdown(wait=False)


class NoLivePeer(SystemExit):
    """A replacement found nobody to heal from (exit EXIT_FT_NO_PEER). The termination
    message says so too: `lazarus-launch` restores the code torchrun turns into 1."""

    def __init__(self, message: str, step: int) -> None:
        from lazarus_contract.ft import EXIT_FT_NO_PEER

        log.error(message)
        write_termination(Termination(OUTCOME_ERROR, step, None, message, code=EXIT_FT_NO_PEER))
        super().__init__(EXIT_FT_NO_PEER)
