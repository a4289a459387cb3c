"""A cycle reads a Kueue job's Workload from the watch, with the operator's own last
write standing in while the watch lags (workloadview.pick, a table): a Workload just
created reads as existing (never created twice), one just patched reads as patched
(never patched again from the older version), and after HELD_MEMORY_S unseen the API
is asked once."""

from __future__ import annotations

from typing import Any

import pytest

from lazarus_operator.workloadview import HELD_MEMORY_S, Held, pick

pytestmark = pytest.mark.unit
T = 1000.0  # monotonic seconds


def wl(rv: int, reason: str = "") -> dict[str, Any]:
    meta = {"name": "trainingjob-a-12345", "resourceVersion": str(rv)}
    return {"metadata": meta, "status": {"reason": reason}}


CREATED = Held(T, wl(10))
PATCHED = Held(T, wl(12, "yielded"))


@pytest.mark.parametrize(
    ("indexed", "held", "now", "reads", "keeps", "asks"),
    [
        # nothing written: the watch says, also that there is none (create it)
        (None, None, T, None, False, False),
        (wl(7), None, T, wl(7), False, False),
        # created, the watch has not shown it yet: it exists
        (None, CREATED, T + 1, wl(10), True, False),
        (None, CREATED, T + HELD_MEMORY_S - 0.1, wl(10), True, False),
        # unseen that long: ask the API (it may be gone, or the watch stuck)
        (None, CREATED, T + HELD_MEMORY_S, wl(10), True, True),
        # the watch shows it: it governs from then on
        (wl(10), CREATED, T + 1, wl(10), False, False),
        (wl(11, "admitted"), CREATED, T + 1, wl(11, "admitted"), False, False),
        # patched, the watch still shows the version before the patch
        (wl(11, "evicted"), PATCHED, T + 1, wl(12, "yielded"), True, False),
        (wl(11, "evicted"), PATCHED, T + HELD_MEMORY_S, wl(12, "yielded"), True, True),
        # the watch caught up with the patch, or moved past it (Kueue admitted again)
        (wl(12, "yielded"), PATCHED, T + 1, wl(12, "yielded"), False, False),
        (wl(13, "admitted"), PATCHED, T + 1, wl(13, "admitted"), False, False),
    ],
)
def test_the_newer_of_the_watch_and_the_own_write(
    indexed: dict[str, Any] | None,
    held: Held | None,
    now: float,
    reads: dict[str, Any] | None,
    keeps: bool,
    asks: bool,
) -> None:
    got = pick(indexed, held, now)
    assert got.workload == reads
    assert (got.held is not None, got.confirm) == (keeps, asks)
    if keeps:
        assert got.held == held
