"""`retry`: how many calls, which waits, and what comes back or is raised (a table)."""

from __future__ import annotations

import threading
import time

import pytest

from lazarus_trainer.retry import retry

pytestmark = pytest.mark.unit


class Flaky:
    """Fails its first `failures` calls, then returns the number of the call."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls = 0

    def __call__(self) -> int:
        self.calls += 1
        if self.calls <= self.failures:
            raise OSError(f"outage {self.calls}")
        return self.calls


@pytest.mark.parametrize(
    ("failures", "tries", "calls", "waits", "raises"),
    [
        (0, 1, 1, [], None),
        (0, 4, 1, [], None),
        (1, 4, 2, [0.5], None),
        (3, 4, 4, [0.5, 1.0, 2.0], None),
        (4, 4, 4, [0.5, 1.0, 2.0], "outage 4"),  # the last failure is the one raised
        (9, 1, 1, [], "outage 1"),
    ],
)
def test_tries_and_backoff(
    failures: int, tries: int, calls: int, waits: list[float], raises: str | None
) -> None:
    fn = Flaky(failures)
    slept: list[float] = []
    if raises is None:
        assert retry(fn, tries=tries, backoff=0.5, what="x", sleep=slept.append) == calls
    else:
        with pytest.raises(OSError, match=raises):
            retry(fn, tries=tries, backoff=0.5, what="x", sleep=slept.append)
    assert fn.calls == calls
    assert slept == waits


@pytest.mark.parametrize(
    ("cancelled", "deadline_in", "calls", "raises"),
    [
        (False, None, 3, False),
        (True, None, 1, True),  # cancelled: the first failure is the last
        (False, 0.2, 1, True),  # the wait would end past the deadline
        (False, 60.0, 3, False),
    ],
)
def test_cancel_and_deadline_end_the_retries(
    cancelled: bool, deadline_in: float | None, calls: int, raises: bool
) -> None:
    fn, cancel = Flaky(2), threading.Event()
    if cancelled:
        cancel.set()
    deadline = None if deadline_in is None else time.monotonic() + deadline_in

    def call() -> int:
        return retry(
            fn,
            tries=5,
            backoff=0.5,
            what="x",
            cancel=cancel,
            deadline=deadline,
            sleep=lambda _: None,
        )

    if raises:
        with pytest.raises(OSError):
            call()
    else:
        assert call() == calls
    assert fn.calls == calls


def test_the_wait_is_the_cancel_event_so_a_cancel_cuts_it_short() -> None:
    fn, cancel = Flaky(5), threading.Event()
    threading.Timer(0.05, cancel.set).start()
    t0 = time.monotonic()
    with pytest.raises(OSError, match="outage 2"):  # woken by the cancel, then given up
        retry(fn, tries=3, backoff=30.0, what="x", cancel=cancel)
    assert time.monotonic() - t0 < 10


def test_no_tries_is_a_caller_bug() -> None:
    with pytest.raises(ValueError, match="tries must be >= 1"):
        retry(Flaky(0), tries=0, backoff=0.0, what="x")
