"""The storage lane: at most `per_key` calls of one endpoint and `per_tenant` of one
tenant run at once; a full endpoint or tenant holds back no other, and waiting
calls hold no thread."""

from __future__ import annotations

import asyncio
import threading
from collections import Counter

import pytest

from lazarus_operator.lanes import Lane, LaneKey

pytestmark = pytest.mark.unit


class Calls:
    """Blocking calls that count how many of each kind run at once."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.lock = threading.Lock()
        self.running: Counter[str] = Counter()
        self.most: Counter[str] = Counter()

    def __call__(self, kind: str, block: bool) -> str:
        with self.lock:
            self.running[kind] += 1
            self.most[kind] = max(self.most[kind], self.running[kind])
        if block:
            self.release.wait(10)
        with self.lock:
            self.running[kind] -= 1
        return kind


def test_a_full_key_waits_in_line_and_holds_back_no_other_key() -> None:
    calls = Calls()
    a, b = LaneKey("ns", "a"), LaneKey("ns", "b")

    async def scenario() -> None:
        lane = Lane("test", threads=8, per_key=2, per_tenant=8)
        stuck = [asyncio.create_task(lane.run(a, calls, "a", True)) for _ in range(5)]
        await asyncio.sleep(0.2)
        assert lane.busy(a) and not lane.busy(b)
        # "b" runs to the end while "a" is stuck with calls waiting behind it.
        assert await asyncio.wait_for(lane.run(b, calls, "b", False), 5) == "b"
        calls.release.set()
        assert await asyncio.gather(*stuck) == ["a"] * 5
        assert not lane.busy(a)

    asyncio.run(scenario())
    assert calls.most["a"] == 2


def test_one_tenants_many_endpoints_leave_the_lane_to_the_others() -> None:
    """One tenant's store reached through many endpoints (or spellings that resolve
    apart) takes `per_tenant` threads, not the lane."""
    calls = Calls()

    async def scenario() -> None:
        lane = Lane("test", threads=8, per_key=2, per_tenant=4)
        noisy = [
            asyncio.create_task(lane.run(LaneKey("noisy", f"ep{i % 10}"), calls, "noisy", True))
            for i in range(40)
        ]
        await asyncio.sleep(0.3)
        assert calls.running["noisy"] == 4
        assert lane.busy(LaneKey("noisy", "another")) and not lane.busy(LaneKey("quiet", "s3"))
        for _ in range(3):  # the quiet tenant's calls go through, one after another
            got = await asyncio.wait_for(lane.run(LaneKey("quiet", "s3"), calls, "q", False), 5)
            assert got == "q"
        calls.release.set()
        assert len(await asyncio.gather(*noisy)) == 40

    asyncio.run(scenario())
    assert calls.most["noisy"] == 4


def test_waiting_calls_that_cannot_run_do_not_hold_back_those_behind_them() -> None:
    calls = Calls()
    stalled, healthy = LaneKey("ns", "stalled"), LaneKey("ns", "healthy")

    async def scenario() -> None:
        lane = Lane("test", threads=4, per_key=1, per_tenant=4)
        first = asyncio.create_task(lane.run(stalled, calls, "s", True))
        await asyncio.sleep(0.1)
        queued = [asyncio.create_task(lane.run(stalled, calls, "s", True)) for _ in range(5)]
        await asyncio.sleep(0.1)
        assert await asyncio.wait_for(lane.run(healthy, calls, "h", False), 5) == "h"
        calls.release.set()
        await asyncio.gather(first, *queued)

    asyncio.run(scenario())
    assert calls.most["s"] == 1


def test_a_caller_that_gives_up_leaves_its_slot_held_until_the_thread_returns() -> None:
    """The thread of a timed-out call is still stuck in its read: it counts against
    its endpoint until it returns, so the endpoint never has more threads than its share."""
    calls = Calls()
    key = LaneKey("ns", "slow")

    async def scenario() -> None:
        lane = Lane("test", threads=4, per_key=1, per_tenant=4)
        with pytest.raises(TimeoutError):
            await lane.run(key, calls, "slow", True, timeout=0.2)
        assert lane.busy(key) and calls.running["slow"] == 1
        # A second call waits for the stuck thread, then gives up in its turn.
        with pytest.raises(TimeoutError):
            await lane.run(key, calls, "slow", False, timeout=0.2)
        calls.release.set()
        for _ in range(50):
            if not lane.busy(key):
                break
            await asyncio.sleep(0.05)
        assert not lane.busy(key)
        assert await asyncio.wait_for(lane.run(key, calls, "slow", False), 5) == "slow"

    asyncio.run(scenario())
    assert calls.most["slow"] == 1


def test_an_exception_in_a_call_frees_its_slot() -> None:
    key = LaneKey("ns", "x")

    def boom() -> None:
        raise ValueError("boom")

    async def scenario() -> None:
        lane = Lane("test", threads=2, per_key=1, per_tenant=1)
        for _ in range(3):
            with pytest.raises(ValueError, match="boom"):
                await asyncio.wait_for(lane.run(key, boom), 5)
        await asyncio.sleep(0.05)
        assert not lane.busy(key)

    asyncio.run(scenario())
