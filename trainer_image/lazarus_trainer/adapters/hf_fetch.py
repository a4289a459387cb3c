"""The RNG state around HF Trainer's data fetches, so that a resume fetches the same batches.

Randomness drawn while fetching (a collator masking tokens from the global RNG, as
`DataCollatorForLanguageModeling` does; a dataset's random augmentation) comes from the
stream the training step also draws from, and Accelerate's loader fetches one batch ahead:
at step N's end the batch of step N+1 is already fetched, from the state *before* step N's
forward pass. HF restores its saved RNG after fetching the first batches of a resumed run,
so those batches draw from a fresh seed and the forward passes skip their draws.

`FetchRng` taps the training loader's fetches (single-process loading): it keeps the state
before the newest fetch, saved per rank while that batch waits, and on resume restores it
just before the same batch is fetched again, then the step-end state right after. A resume
at an epoch's start restores the step-end state before the epoch's iterator is created, as
HF does.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..rng import capture_rng, restore_rng

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


class FetchRng:
    """A per-rank Lazarus extra: the RNG state before the batch fetched ahead, if any."""

    def __init__(self) -> None:
        self.before: dict[str, Any] | None = None  # state before the newest fetch
        self.ahead = False  # that fetch returned a batch no step has trained on yet
        # On resume: (state before the batch fetched ahead, or None at an epoch's start;
        # the step-end state), applied once by the next tapped iterator.
        self._armed: tuple[dict[str, Any] | None, dict[str, Any]] | None = None

    def state_dict(self) -> dict[str, Any]:
        return {"ahead": self.ahead, "rng": self.before if self.ahead else None}

    def load_state_dict(self, state: dict[str, Any], /) -> None:
        pass  # applied through arm(): the restore belongs at a fetch, not at load time

    def arm(self, saved: dict[str, Any], step_end_rng: dict[str, Any]) -> None:
        before = saved.get("rng") if saved.get("ahead") else None
        self._armed = (before, step_end_rng)

    def tap(self, loader: Any) -> Any:
        """Wrap `loader`'s iterators (a resumed loader is a new object: tap it too)."""
        base = loader.base_dataloader
        make = base._get_iterator
        skip = int(getattr(loader, "skip_batches", 0) or 0)  # fetched, then dropped

        def get_iterator() -> Any:
            armed, self._armed = self._armed, None
            if armed is not None and armed[0] is None:
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
        armed: tuple[dict[str, Any] | None, dict[str, Any]] | None,
        skip: int,
    ) -> Callable[[], Any]:
        fetched = 0

        def next_data() -> Any:
            nonlocal armed, fetched
            if armed is not None and fetched == skip and (before := armed[0]) is not None:
                after, armed = armed[1], None
                restore_rng(before)  # the state this batch was first fetched from
                data = self._record(fetch)
                restore_rng(after)  # and the rest of the run continues from the step end
                return data
            fetched += 1
            return self._record(fetch)

        return next_data

    def _record(self, fetch: Callable[[], Any]) -> Any:
        before = capture_rng()
        try:
            data = fetch()
        except StopIteration:
            self.ahead = False
            raise
        self.before, self.ahead = before, True
        return data
