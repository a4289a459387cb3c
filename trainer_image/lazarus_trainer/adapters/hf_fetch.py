"""The RNG state around HF Trainer's data fetches, so that a resume fetches the same batches.

Randomness drawn while fetching (a collator masking tokens from the global RNG, as
`DataCollatorForLanguageModeling` does; a dataset's random augmentation) comes from the
stream the training step also draws from, and Accelerate's loader fetches one batch ahead:
at step N's end the batch of step N+1 is already fetched, from the state *before* step N's
forward pass. HF restores its saved RNG after fetching the first batches of a resumed run,
so those batches draw from a fresh seed and the forward passes skip their draws.

`FetchTap` taps the training loader's fetches (single-process loading) into the core's
`rng.FetchRng`, which keeps the state before the batch fetched ahead, saved per rank while
that batch waits, and on resume restores it just before the same batch is fetched again
(after the batches a resumed loader fetches to skip), then the step-end state right after.
A resume at an epoch's start restores the step-end state before the epoch's iterator is
created, as HF does.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..rng import FetchRng, restore_rng

KEY = "hf_fetch_rng"


def tappable(loader: Any) -> bool:
    """Accelerate's one-batch-ahead loader over a single-process DataLoader."""
    from accelerate.data_loader import DataLoaderDispatcher, DataLoaderShard

    base = getattr(loader, "base_dataloader", None)
    return (
        isinstance(loader, DataLoaderShard)
        and not isinstance(loader, DataLoaderDispatcher)
        and base is not None
        and getattr(base, "num_workers", 0) == 0
        and hasattr(base, "_get_iterator")
    )


class FetchTap:
    """A per-rank Lazarus extra: HF's loaders' fetches, recorded one batch ahead."""

    def __init__(self) -> None:
        self.rng = FetchRng()
        # On resume: (the states before the batches fetched ahead, none at an epoch's start;
        # the step-end state), applied once by the next tapped iterator.
        self._armed: tuple[list[dict[str, Any]], dict[str, Any]] | None = None

    def state_dict(self) -> dict[str, Any]:
        return self.rng.state_dict()

    def load_state_dict(self, state: dict[str, Any], /) -> None:
        pass  # applied through arm(): the restore belongs at a fetch, not at load time

    def arm(self, saved: dict[str, Any], step_end_rng: dict[str, Any]) -> None:
        self._armed = (list(saved.get("pending") or []), step_end_rng)

    def tap(self, loader: Any) -> Any:
        """Wrap `loader`'s iterators (a resumed loader is a new object: tap it too)."""
        base = loader.base_dataloader
        make = base._get_iterator
        skip = int(getattr(loader, "skip_batches", 0) or 0)  # fetched, then dropped

        def get_iterator() -> Any:
            armed, self._armed = self._armed, None
            if armed is not None and not armed[0]:
                restore_rng(armed[1])  # an epoch's start: where HF restores it
                armed = None
            it = make()
            it._next_data = self._fetch(it._next_data, armed, skip)
            return it

        base._get_iterator = get_iterator
        return loader

    def _fetch(
        self,
        fetch: Callable[[], Any],
        armed: tuple[list[dict[str, Any]], dict[str, Any]] | None,
        skip: int,
    ) -> Callable[[], Any]:
        fetched = 0

        def next_data() -> Any:
            nonlocal armed, fetched
            if armed is not None and fetched == skip:
                self.rng.arm(*armed)  # the batch fetched ahead, fetched again from its state
                armed = None
            fetched += 1
            try:
                data = self.rng.record(fetch)
            except StopIteration:
                self.rng.used(len(self.rng.fetched))  # the epoch ended: none is ahead
                raise
            self.rng.used(len(self.rng.fetched) - 1)  # one ahead: the ones before it are used
            return data

        return next_data
