"""The storage lane: at most `per_key` calls of one key run at once, and a full key
holds back no other key."""

from __future__ import annotations

import asyncio
import threading

import pytest

from lazarus_operator.lanes import Lane

pytestmark = pytest.mark.unit


def test_a_full_key_waits_in_line_and_holds_back_no_other_key() -> None:
    release = threading.Event()
    running: dict[str, int] = {"a": 0, "b": 0}
    most = {"a": 0, "b": 0}
    lock = threading.Lock()

    def call(key: str, block: bool) -> str:
        with lock:
            running[key] += 1
            most[key] = max(most[key], running[key])
        if block:
            release.wait(10)
        with lock:
            running[key] -= 1
        return key

    async def scenario() -> None:
        lane = Lane("test", threads=8, per_key=2)
        stuck = [asyncio.create_task(lane.run("a", call, "a", True)) for _ in range(5)]
        await asyncio.sleep(0.2)
        assert lane.busy("a") and not lane.busy("b")
        # "b" runs to the end while "a" is stuck with calls waiting behind it.
        assert await asyncio.wait_for(lane.run("b", call, "b", False), 5) == "b"
        release.set()
        assert await asyncio.gather(*stuck) == ["a"] * 5
        assert not lane.busy("a")

    asyncio.run(scenario())
    assert most["a"] == 2
