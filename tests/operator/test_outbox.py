"""Events survive an API outage: a failed post waits and is sent, in order, later."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from typing import Any

import pytest

from lazarus_operator.outbox import Outbox

pytestmark = pytest.mark.unit

JOB = {"apiVersion": "lazarus.dev/v1alpha1", "kind": "TrainingJob", "metadata": {"name": "j"}}


class FlakyApi:
    """Refuses connections while `down`, as a stopped API server does."""

    def __init__(self) -> None:
        self.down = False
        self.posted: list[tuple[str, datetime]] = []

    async def post(
        self, job: dict[str, Any], type_: str, reason: str, msg: str, at: datetime
    ) -> None:
        if self.down:
            raise ConnectionRefusedError("connection refused")
        self.posted.append((reason, at))


def test_events_posted_during_an_outage_are_sent_in_order_once_it_ends() -> None:
    api = FlakyApi()
    box = Outbox(api.post)

    async def scenario() -> None:
        await box.post(JOB, [("Warning", "RestartDisrupted", "evicted")])
        api.down = True
        await box.post(JOB, [("Normal", "Launched", "attempt 2")])
        await box.post(JOB, [("Warning", "RestartFailed", "crash")])
        assert len(box) == 2
        api.down = False
        assert await box.flush() == 2

    asyncio.run(scenario())
    assert [r for r, _ in api.posted] == ["RestartDisrupted", "Launched", "RestartFailed"]
    assert api.posted[1][1] < api.posted[2][1], "each event keeps the time it happened"


def test_the_queue_is_bounded() -> None:
    api = FlakyApi()
    api.down = True
    box = Outbox(api.post, limit=3)
    asyncio.run(box.post(JOB, [("Normal", f"E{i}", "") for i in range(5)]))
    assert len(box) == 3 and box.dropped == 2
    api.down = False
    asyncio.run(box.flush())
    assert [r for r, _ in api.posted] == ["E2", "E3", "E4"]


def test_events_older_than_the_age_limit_are_dropped() -> None:
    api = FlakyApi()
    api.down = True
    box = Outbox(api.post, max_age_s=0.2)
    asyncio.run(box.post(JOB, [("Normal", "Old", "")]))
    time.sleep(0.3)
    api.down = False
    asyncio.run(box.post(JOB, [("Normal", "New", "")]))
    assert [r for r, _ in api.posted] == ["New"] and box.dropped == 1


def test_concurrent_flushes_post_each_event_once_in_order() -> None:
    """The resync's flush and a cycle's post may overlap (each awaits the API): an
    event is posted once, in order, and neither flush fails (an IndexError here once
    ended the resync loop for good)."""
    posted: list[str] = []

    async def slow_post(
        job: dict[str, Any], type_: str, reason: str, msg: str, at: datetime
    ) -> None:
        await asyncio.sleep(0.01)
        posted.append(reason)

    box = Outbox(slow_post)

    async def scenario() -> None:
        await asyncio.gather(
            box.post(JOB, [("Normal", "A", ""), ("Normal", "B", "")]),
            box.flush(),
            box.post(JOB, [("Normal", "C", "")]),
            box.flush(),
        )

    asyncio.run(scenario())
    assert posted == ["A", "B", "C"] and len(box) == 0


def test_the_sender_posts_what_is_queued_in_order_and_retries_while_the_api_is_away() -> None:
    api = FlakyApi()
    box = Outbox(api.post)

    async def scenario() -> None:
        sender = asyncio.create_task(box.send_forever(retry_s=0.05))
        api.down = True
        box.queue(JOB, [("Warning", "RestartFailed", "crash")])
        await asyncio.sleep(0.2)  # a few failed tries
        assert api.posted == [] and len(box) == 1
        api.down = False
        box.queue(JOB, [("Normal", "Launched", "attempt 2"), ("Normal", "Running", "ok")])
        for _ in range(100):
            if not len(box):
                break
            await asyncio.sleep(0.01)
        sender.cancel()

    asyncio.run(scenario())
    assert [r for r, _ in api.posted] == ["RestartFailed", "Launched", "Running"]


def test_several_jobs_events_post_at_once_each_jobs_in_order() -> None:
    in_flight, most = 0, 0
    posted: list[tuple[str, str]] = []

    async def slow_post(
        job: dict[str, Any], type_: str, reason: str, msg: str, at: datetime
    ) -> None:
        nonlocal in_flight, most
        in_flight += 1
        most = max(most, in_flight)
        await asyncio.sleep(0.02)
        posted.append((job["metadata"]["name"], reason))
        in_flight -= 1

    box = Outbox(slow_post, parallel=4)
    names = [f"j{i}" for i in range(6)]
    jobs: list[dict[str, Any]] = [{**JOB, "metadata": {"name": n}} for n in names]

    async def scenario() -> None:
        for reason in ("RestartFailed", "Launched"):
            for job in jobs:
                box.queue(job, [("Normal", reason, "")])
        assert await box.flush() == 12

    asyncio.run(scenario())
    assert most == 4
    for name in names:
        assert [r for n, r in posted if n == name] == ["RestartFailed", "Launched"]


def test_an_event_the_api_refuses_is_dropped_and_holds_back_no_other() -> None:
    posted: list[str] = []

    async def post(job: dict[str, Any], type_: str, reason: str, msg: str, at: datetime) -> None:
        if reason == "Bad":
            raise ValueError("422: the API refused this event")
        posted.append(reason)

    box = Outbox(post, retryable=lambda exc: not isinstance(exc, ValueError))

    async def scenario() -> None:
        box.queue(JOB, [("Normal", "Bad", ""), ("Normal", "Launched", "")])
        assert await box.flush() == 1

    asyncio.run(scenario())
    assert posted == ["Launched"] and len(box) == 0 and box.dropped == 1
