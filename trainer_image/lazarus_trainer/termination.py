"""The termination message (docs/contract.md section 4) and the exit codes that go with it."""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn, ParamSpec, TypeVar

from lazarus_contract import (
    DEFAULT_TERMINATION_LOG,
    ENV_TERMINATION_LOG,
    EXIT_COMPLETED,
    EXIT_PERMANENT,
    EXIT_PREEMPTED,
    OUTCOME_COMPLETED,
    OUTCOME_ERROR,
    OUTCOME_PERMANENT,
    OUTCOME_PREEMPTED,
)
from lazarus_contract.termination import LastCheckpoint, TerminationMessage

log = logging.getLogger(__name__)

EXIT_CODE_BY_OUTCOME = {
    OUTCOME_COMPLETED: EXIT_COMPLETED,
    OUTCOME_PREEMPTED: EXIT_PREEMPTED,
    OUTCOME_PERMANENT: EXIT_PERMANENT,
    OUTCOME_ERROR: 1,
}


P = ParamSpec("P")
R = TypeVar("R")


class PermanentError(Exception):
    """A configuration or checkpoint problem that a retry cannot fix (exit EXIT_PERMANENT)."""


class PermanentExit(PermanentError, SystemExit):
    """A `PermanentError` that, left uncaught, ends the process with EXIT_PERMANENT (78).

    Raised from the library's entry points (`exits_permanent`), so a user's script, an HF
    `Trainer` callback or a loop that never catches it still exits with the contract's
    code, while `except PermanentError` keeps working."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.code = EXIT_PERMANENT


@dataclass
class Termination:
    outcome: str
    step: int
    last_checkpoint: tuple[str, int] | None
    message: str
    saved_on_signal: bool = False
    grace_shortfall: bool = False
    code: int | None = None  # a contract code the outcome alone does not say (76)

    @property
    def exit_code(self) -> int:
        return self.code if self.code is not None else EXIT_CODE_BY_OUTCOME[self.outcome]

    def to_json(self) -> str:
        """The contract's encoding (lazarus_contract.termination), within 4096 bytes."""
        last = self.last_checkpoint
        return TerminationMessage(
            outcome=self.outcome,
            step=self.step,
            last_checkpoint=LastCheckpoint(*last) if last else None,
            exit_code=self.exit_code,
            saved_on_signal=self.saved_on_signal,
            grace_shortfall=self.grace_shortfall,
            message=self.message,
        ).encode()


def termination_log_path() -> Path:
    return Path(os.environ.get(ENV_TERMINATION_LOG) or DEFAULT_TERMINATION_LOG)


# The progress signal (progress.py) shares the file: one lock orders the writes, and a
# file that holds a final message gets no progress write after it.
_file_lock = threading.Lock()
_final: set[Path] = set()
_before_leave: list[Callable[[], None]] = []


@contextlib.contextmanager
def message_file(path: Path) -> Iterator[bool]:
    """Hold the file for a progress write; yields False once a final message is in it."""
    with _file_lock:
        yield path not in _final


def final_written(path: Path) -> bool:
    return path in _final


def reopen(path: Path) -> None:
    """A new run in this process: its progress may overwrite an earlier run's message."""
    with _file_lock:
        _final.discard(path)


def before_leave(flush: Callable[[], None]) -> None:
    """Have `leave` call `flush` first (it skips `atexit`): the progress signal's last step."""
    _before_leave.append(flush)


def write_termination(term: Termination, path: Path | None = None) -> None:
    """Write the message where kubelet looks; a missing /dev/termination-log is not fatal."""
    target = path or termination_log_path()
    with _file_lock:
        _final.add(target)
        try:
            target.write_text(term.to_json())
        except OSError as exc:
            log.warning("could not write termination message to %s: %s", target, exc)
    log.info("termination: %s", term.to_json())


def exits_permanent(fn: Callable[P, R]) -> Callable[P, R]:
    """Turn a `PermanentError` from `fn` into a `PermanentExit` after writing the
    termination message (`permanent-error`), so the operator does not retry it."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except PermanentExit:
            raise
        except PermanentError as exc:
            log.error("permanent error: %s", exc)
            write_termination(Termination("permanent-error", -1, None, str(exc)))
            raise PermanentExit(str(exc)) from exc

    return wrapper


def leave(code: int) -> NoReturn:
    """End the trainer process with `code`, its logs flushed, without interpreter teardown.

    Call it once the termination message is written. Teardown is where a finished run can
    still die: a thread inside torch's C++ code (a gloo worker dropping its last tensor, a
    save thread mid-copy) that takes the GIL while CPython finalizes is ended with
    `pthread_exit`, whose unwinding hits a `noexcept` frame: "terminate called without an
    active exception", SIGABRT, and a completed run reads as a crash. Teardown also spends
    seconds on a final collection over torch's objects, out of a preemption's grace period.
    A training process needs none of it once its state is committed.
    """
    for flush in _before_leave:
        with contextlib.suppress(Exception):  # leaving must not fail on a report
            flush()
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # closed or gone: nothing to lose
            stream.flush()
    os._exit(code)


def _exit_code(exc: SystemExit) -> int:
    """The status CPython would exit with for `exc`: None is 0, a non-int is printed and 1."""
    if exc.code is None:
        return 0
    if isinstance(exc.code, int):
        return exc.code
    print(exc.code, file=sys.stderr)
    return 1


@contextlib.contextmanager
def leaving() -> Iterator[None]:
    """Run the block, then `leave` with the code its ending implies.

    For scripts whose exit is raised from inside a library: the HF callback ends `train()`
    with `SystemExit(75)` after a preemption save. The block returning is 0; a `SystemExit`
    keeps its code; Ctrl-C is 130; any other exception is logged with its traceback and is 1.
    """
    try:
        yield
    except SystemExit as exc:
        leave(_exit_code(exc))
    except KeyboardInterrupt:
        leave(130)
    except BaseException:
        log.exception("training failed")
        leave(1)
    leave(0)
