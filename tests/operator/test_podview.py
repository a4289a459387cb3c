"""A DELETE that finds a pod already gone (the kubelet reported its end and removed it
while the operator's watch lagged) does not let a cycle book before the watch
delivers that end: the evicted trainer's last step (an eviction in start-up was booked
"unknown, at least 0" instead of "0 lost")."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from lazarus_operator.podview import PodView
from lazarus_operator.watched import Watched

from .factories import pod

pytestmark = pytest.mark.unit

KEY = ("ns", "job")


class Api:
    """The API's answer to the view's one LIST: the pods it still has."""

    def __init__(self) -> None:
        self.pods: list[dict[str, Any]] = []

    async def list_pods(self, ns: str, selector: str) -> list[dict[str, Any]]:
        return self.pods


def view(pods: list[dict[str, Any]]) -> tuple[PodView, dict[tuple[str, str], list[Any]]]:
    index: dict[tuple[str, str], list[Any]] = {KEY: pods}
    pv = PodView(Api())  # type: ignore[arg-type]
    pv.watched = Watched(pods=index, nodes={}, services={})
    return pv, index


def evicted(uid: str = "u2") -> dict[str, Any]:
    p = pod("job-a2-0", attempt=2)
    p["metadata"]["uid"] = uid
    return p


def listed(pv: PodView, now: datetime | None = None) -> list[dict[str, Any]]:
    return asyncio.run(pv.pods(KEY, now or datetime.now(UTC)))


def test_a_pod_found_gone_before_its_end_was_heard_waits_for_the_watch() -> None:
    pv, index = view([evicted()])
    pv.deleted_missing(KEY, "job-a2-0")
    (waiting,) = listed(pv)
    assert waiting["metadata"]["deletionTimestamp"], "being deleted: no DELETE again"
    # The watch delivers the end: the trainer ended without a step (start-up).
    ended = pod("job-a2-0", attempt=2, phase="Failed", exit_code=143, message="")
    ended["metadata"]["uid"] = "u2"
    index[KEY] = []
    pv.observe(KEY, ended)
    assert listed(pv) == [] and pv.seen_steps(KEY) == {"job-a2-0": -1}


def test_a_pod_whose_end_was_heard_is_left_out_at_once() -> None:
    pv, _ = view([evicted()])
    pv.note_step(KEY, pod("job-a2-0", attempt=2, phase="Failed", exit_code=1, message=""))
    pv.deleted_missing(KEY, "job-a2-0")
    assert listed(pv) == []


def test_after_a_gap_in_the_watch_it_goes_once_overdue() -> None:
    """The watch relisted past its deletion: no end will come. Overdue, one LIST
    shows it gone and it is left out (the booking then says "unknown")."""
    pv, _ = view([evicted()])
    pv.deleted_missing(KEY, "job-a2-0")
    assert len(listed(pv)) == 1
    assert listed(pv, datetime.now(UTC) + timedelta(seconds=10)) == []
