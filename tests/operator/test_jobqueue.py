"""The cycles' work queue: one run at a time per key, kicks during a run fold into one
more run, a failing key waits out its backoff, and the timer a run asks for kicks it."""

from __future__ import annotations

import asyncio

import pytest

from lazarus_operator.jobqueue import Backoff, JobQueue, Outcome

pytestmark = pytest.mark.unit


def test_kicks_during_a_run_fold_into_one_more_run() -> None:
    runs: list[tuple[str, bool]] = []
    release = asyncio.Event()

    async def run(key: str, refresh: bool, backoff: Backoff) -> Outcome:
        runs.append((key, refresh))
        if len(runs) == 1:
            await release.wait()
        return Outcome(None, f"run {len(runs)}")

    async def scenario() -> list[Outcome]:
        q: JobQueue[str] = JobQueue(run)
        first = asyncio.create_task(q.kick("a"))
        await asyncio.sleep(0)  # the first run is waiting
        during = [await q.kick("a"), await q.kick("a", refresh=True), await q.kick("a")]
        release.set()
        return [*during, await first]

    outcomes = asyncio.run(scenario())
    # Three kicks while the first ran: one more run, which carries the refresh asked.
    assert runs == [("a", False), ("a", True)]
    assert [o.waiting for o in outcomes] == ["", "", "", "run 2"]


def test_other_keys_run_beside_a_running_one() -> None:
    order: list[str] = []
    release = asyncio.Event()

    async def run(key: str, refresh: bool, backoff: Backoff) -> Outcome:
        order.append(f"start {key}")
        if key == "slow":
            await release.wait()
        order.append(f"end {key}")
        return Outcome()

    async def scenario() -> None:
        q: JobQueue[str] = JobQueue(run)
        slow = asyncio.create_task(q.kick("slow"))
        await asyncio.sleep(0)
        await q.kick("fast")
        release.set()
        await slow

    asyncio.run(scenario())
    assert order == ["start slow", "start fast", "end fast", "end slow"]


def test_a_failing_key_is_not_due_until_its_backoff_and_a_success_ends_it() -> None:
    async def run(key: str, refresh: bool, backoff: Backoff) -> Outcome:
        if refresh:  # the test's way of making a run succeed
            backoff.succeeded()
            return Outcome()
        return Outcome(backoff.failed(unavailable=False), "failing")

    async def scenario() -> JobQueue[str]:
        q: JobQueue[str] = JobQueue(run)
        assert (await q.kick("a")).requeue_after == 2.0
        assert not q.due("a") and q.due("b")
        q.forget("a")  # its timer goes too
        assert "a" not in q and q.due("a")
        await q.kick("a")
        await q.kick("a", refresh=True)
        return q

    q = asyncio.run(scenario())
    assert q.due("a") and list(q) == ["a"]


def test_the_outcome_timer_runs_the_key_again() -> None:
    runs: list[float] = []
    done = asyncio.Event()

    async def run(key: str, refresh: bool, backoff: Backoff) -> Outcome:
        runs.append(asyncio.get_running_loop().time())
        if len(runs) == 2:
            done.set()
            return Outcome()
        return Outcome(0.01, "due soon")

    async def scenario() -> None:
        q: JobQueue[str] = JobQueue(run)
        await q.kick("a")
        await asyncio.wait_for(done.wait(), 5)

    asyncio.run(scenario())
    assert len(runs) == 2


@pytest.mark.parametrize(
    ("messages", "reported"),
    [
        (["boom", "boom", "boom"], [True, False, False]),
        (["boom", "bang", "boom"], [True, True, True]),
    ],
)
def test_each_distinct_error_is_reported_once(messages: list[str], reported: list[bool]) -> None:
    b = Backoff()
    assert [b.new_error(m) for m in messages] == reported
    assert b.succeeded() is False  # no failure was counted: nothing to recover from
    b.failed(unavailable=True)
    assert b.succeeded() and b.recovered and b.last_error == "" and b.failures == 0
