"""Lazarus for Accelerate scripts.

Accelerate's `save_state` captures models, optimizers, schedulers, the scaler and RNGs, but
writes them synchronously to a local directory without a commit marker or checksum, and it
does not record where in the data the run is or which step it reached (accelerate#1601,
#2016). This adapter registers the *unwrapped* objects with Lazarus, which owns the step
counter and data position, and saves through the store.

A DataLoader passed to `accelerator.prepare()` is resumed as Accelerate's docs teach:
`accelerator.skip_first_batches(loader, resume_batches(lz))` in the epoch the run stopped
in. Exact only with `use_seedable_sampler=True` (the order is a function of the seed and
the epoch); other shuffling patterns are refused at `from_accelerator` (docs/trainer.md).
"""

from __future__ import annotations

import functools
from typing import Any

import torch

from ..api import Lazarus
from ..config import LazarusConfig
from ..fidelity import FETCH_UNHOOKED
from ..rng import FetchRng
from ..state import Stateful
from ..termination import PermanentError, exits_permanent

SUPPORTED = (
    "Accelerator(dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True)), "
    "resumed with accelerator.skip_first_batches(loader, resume_batches(lz))"
)


def _unwrap_optimizer(opt: Any) -> Stateful:
    inner = getattr(opt, "optimizer", opt)  # AcceleratedOptimizer keeps the real one here
    assert isinstance(inner, Stateful)
    return inner


def _unwrap_scheduler(sched: Any) -> Stateful:
    inner = getattr(sched, "scheduler", sched)  # AcceleratedScheduler
    assert isinstance(inner, Stateful)
    return inner


def check_prepared_loader(loader: Any) -> None:
    """Refuse the prepared-DataLoader patterns whose resume this adapter cannot make exact."""
    from accelerate.data_loader import (
        DataLoaderDispatcher,
        DataLoaderShard,
        SeedableRandomSampler,
        get_sampler,
    )
    from torch.utils.data import IterableDataset, RandomSampler

    # The dataset first: Accelerate dispatches an IterableDataset's batches by default, and
    # the user who never set dispatch_batches needs to hear about the dataset.
    if isinstance(getattr(loader, "dataset", None), IterableDataset):
        raise PermanentError(
            "a prepared DataLoader over an IterableDataset cannot be resumed without "
            f"replaying it; supported: a map-style dataset with {SUPPORTED}"
        )
    if isinstance(loader, DataLoaderDispatcher):
        raise PermanentError(
            "a DataLoader prepared with dispatch_batches=True is not supported (rank 0 "
            f"fetches every rank's batches, which Lazarus does not resume); supported: {SUPPORTED}"
        )
    if not isinstance(loader, DataLoaderShard):
        raise PermanentError(
            f"dataloader= takes a DataLoader returned by accelerator.prepare(), got "
            f"{type(loader).__name__}; supported: {SUPPORTED}"
        )
    if getattr(loader, "use_stateful_dataloader", False):
        raise PermanentError(
            f"use_stateful_dataloader=True is not supported (its state is not saved by "
            f"Lazarus); supported: {SUPPORTED}"
        )
    sampler = get_sampler(loader)
    if isinstance(sampler, RandomSampler) and not isinstance(sampler, SeedableRandomSampler):
        raise PermanentError(
            "a shuffled DataLoader prepared without use_seedable_sampler=True draws its order "
            f"from a generator whose state Lazarus does not see; use {SUPPORTED}"
        )


def _hook_fetches(loader: Any, rng: FetchRng) -> bool:
    """Bracket every batch fetch of `loader` (and of the loaders `skip_first_batches` makes
    from it, which share its dataset and collate_fn) with `rng`: an instance `__getitems__`,
    which torch's fetcher calls first for a batch, and the collate_fn, which it calls last."""
    dataset, base = loader.dataset, loader.base_dataloader
    own = getattr(dataset, "__getitems__", None)
    collate = base.collate_fn

    def getitems(indices: list[int]) -> Any:
        rng.before_fetch()
        return own(indices) if own else [dataset[i] for i in indices]

    def collate_fn(rows: Any) -> Any:
        batch = collate(rows)
        rng.after_fetch()
        return batch

    try:
        dataset.__getitems__ = getitems
    except (AttributeError, TypeError):
        return False  # no instance attributes (__slots__): fetch-time draws are not resumed
    base.collate_fn = collate_fn
    return True


class LoaderPosition:
    """Where training is in a prepared DataLoader: its epoch and the batches of that epoch
    that optimizer steps have used (not what the loader prefetched), the loader's own
    generator, which creating an iterator (a `skip_first_batches` on resume too) draws from
    instead of the global RNG, and the RNG before each batch fetched but not yet used.

    Steps count `batches_per_step` batches, but at most what is left of the epoch (with
    Accelerate's default `sync_with_dataloader` an epoch's last step takes what remains),
    and a step that began in the epoch before takes the rest from it first."""

    def __init__(self, loader: Any, batches_per_step: int) -> None:
        self.loader = loader
        self.batches_per_step = batches_per_step
        self.batches = 0
        self._epoch = int(loader.iteration)
        base = loader.base_dataloader
        if base.generator is None:
            base.generator = torch.Generator()
        self.generator: torch.Generator = base.generator
        self.fetch_rng = FetchRng()
        self.hooked = loader.num_workers == 0 and _hook_fetches(loader, self.fetch_rng)

    @property
    def epoch(self) -> int:
        """The loader's epoch (`loader.set_epoch`, or its own count of finished passes)."""
        return int(self.loader.iteration)

    def advance(self, samples: int) -> None:
        """One optimizer step (Lazarus.step calls it, after `at_sync_boundary`)."""
        per, total = self.batches_per_step, len(self.loader)
        if self.epoch != self._epoch:
            self._epoch, self.batches = self.epoch, max(0, self.batches + per - total)
            used = per
        else:
            used = min(per, total - self.batches)
            self.batches += used
        self.fetch_rng.used(used)

    def fidelity_warnings(self) -> list[str]:
        """A dataset the fetch hook cannot take (with workers, fidelity.WORKERS says it)."""
        if self.hooked or self.loader.num_workers > 0:
            return []
        return [FETCH_UNHOOKED.format(dataset=type(self.loader.dataset).__name__)]

    def resume_batches(self, epoch: int) -> int:
        """Batches of `epoch` already used: what `skip_first_batches` skips."""
        return self.batches if epoch == self._epoch else 0

    def state_dict(self) -> dict[str, Any]:
        state = self.generator.get_state()
        return {"epoch": self._epoch, "batches": self.batches, "generator": state}

    def check_state(self, state: Any) -> str | None:
        """Why `state` cannot be loaded (None: it can), asked before the checkpoint is chosen."""
        if not isinstance(state, dict):
            return "is not a dict"
        if not all(type(state.get(k)) is int and state[k] >= 0 for k in ("epoch", "batches")):
            return "has no non-negative epoch and batches"
        gen, ours = state.get("generator"), self.generator.get_state()
        if not isinstance(gen, torch.Tensor) or (gen.dtype, gen.shape) != (ours.dtype, ours.shape):
            return "has no generator state of this generator's shape"
        return None

    def load_state_dict(self, state: dict[str, Any], /) -> None:
        self._epoch, self.batches = int(state["epoch"]), int(state["batches"])
        if self.batches >= len(self.loader):  # the epoch was used up: resume at the next
            self._epoch, self.batches = self._epoch + 1, 0
        self.loader.set_epoch(self._epoch)
        self.generator.set_state(state["generator"])


def resume_batches(lz: Lazarus) -> int:
    """Batches of the current epoch that training used before it stopped: pass them to
    `accelerator.skip_first_batches` (0 once the run is past its resume epoch)."""
    position = lz.registry.sampler
    if not isinstance(position, LoaderPosition):
        raise PermanentError("resume_batches needs from_accelerator(..., dataloader=loader)")
    return position.resume_batches(lz.epoch)


def at_sync_boundary(gradient_state: Any) -> None:
    """Refuse a step where Accelerate holds accumulated gradients (a save there would lose
    them, and each micro-batch would count as a step), with a prepared loader or a sampler."""
    if not gradient_state.sync_gradients:
        raise PermanentError(
            "lz.step() was called on a gradient accumulation micro-step: call it once "
            "per optimizer step, when accelerator.sync_gradients is True"
        )


@exits_permanent
def from_accelerator(
    accelerator: Any,
    *,
    model: torch.nn.Module,
    optimizer: Any,
    scheduler: Any = None,
    sampler: Stateful | None = None,
    dataloader: Any = None,
    config: LazarusConfig | None = None,
    extras: dict[str, Stateful] | None = None,
) -> Lazarus:
    """A `Lazarus` for objects returned by `accelerator.prepare(...)`.

    Create it *after* `prepare` (the process group exists then). Pass the scheduler
    unprepared or prepared: either way Lazarus saves the real one. Objects registered with
    `accelerator.register_for_checkpointing` are saved too. Either `sampler` (a
    `ResumableSampler` in a DataLoader you build per epoch) or `dataloader` (a prepared one;
    call `lz.step()` once per optimizer step, i.e. when `accelerator.sync_gradients`).
    """
    if dataloader is not None:
        if sampler is not None:
            raise PermanentError("pass sampler= or dataloader=, not both")
        check_prepared_loader(dataloader)
        per_step = max(1, int(accelerator.gradient_accumulation_steps))
        sampler = LoaderPosition(dataloader, per_step)
    lz = Lazarus(config)
    lz.registry.step_checks.append(functools.partial(at_sync_boundary, accelerator.gradient_state))
    if isinstance(sampler, LoaderPosition) and sampler.hooked:
        lz.registry.rank_extras["accelerate_fetch_rng"] = sampler.fetch_rng
    custom = {f"accelerate_custom_{i}": o for i, o in enumerate(accelerator._custom_objects)}
    lz.register(
        model=accelerator.unwrap_model(model),
        optimizer=_unwrap_optimizer(optimizer),
        scheduler=_unwrap_scheduler(scheduler) if scheduler is not None else None,
        scaler=accelerator.scaler,
        sampler=sampler,
        extras={**custom, **(extras or {})},
    )
    return lz
