"""`lazarus-launch`: run torchrun (or any command) as a child and exit with the contract's code.

torchrun reports any worker failure as exit 1, which hides 75 (`EXIT_PREEMPTED`) and 78
(`EXIT_PERMANENT`) from the operator. This launcher runs the command, forwards SIGTERM and
SIGINT to it, and when it exits reads the termination message the workers wrote
(docs/contract.md section 4): `preempted` -> 75, `permanent-error` -> 78, `completed` -> 0,
an `error` whose exitCode is 76 (a replica group's replacement without a live peer) -> 76,
anything else (or no message) -> the child's own code.

    lazarus-launch torchrun --nproc-per-node 4 -m lazarus_trainer.reference --steps 1000
    lazarus-launch --nproc-per-node 4 -m lazarus_trainer.reference   # torchrun implied
"""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
from pathlib import Path
from types import FrameType

from lazarus_contract import (
    OUTCOME_COMPLETED,
    OUTCOME_ERROR,
    OUTCOME_PERMANENT,
    OUTCOME_PREEMPTED,
)
from lazarus_contract.ft import EXIT_FT_NO_PEER
from lazarus_contract.termination import decode

from .termination import EXIT_CODE_BY_OUTCOME, termination_log_path

log = logging.getLogger("lazarus.launch")

MAPPED = (OUTCOME_COMPLETED, OUTCOME_PREEMPTED, OUTCOME_PERMANENT)


def exit_code(child_code: int, message: Path) -> int:
    """The container's exit code: the outcome the workers wrote, else the child's code."""
    code = 128 - child_code if child_code < 0 else child_code  # killed by a signal
    try:
        msg = decode(message.read_bytes())
    except OSError:
        return code
    if msg.outcome == OUTCOME_ERROR and msg.exit_code == EXIT_FT_NO_PEER and code:
        return EXIT_FT_NO_PEER  # a replica group's replacement without a peer (contract 2a)
    return EXIT_CODE_BY_OUTCOME[msg.outcome] if msg.outcome in MAPPED else code


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["--"]:
        args = args[1:]
    if not args or args[0] in ("-h", "--help"):
        print(__doc__)
        sys.exit(0 if args else 2)
    cmd = (
        [sys.executable, "-m", "torch.distributed.run", *args] if args[0].startswith("-") else args
    )
    message = termination_log_path()
    try:  # a message left by an earlier run in this container must not decide this one
        message.write_text("")
    except OSError as exc:
        log.warning("could not clear %s: %s", message, exc)
    child = subprocess.Popen(cmd)

    def forward(signum: int, frame: FrameType | None) -> None:
        log.info("forwarding %s to the trainer (pid %d)", signal.Signals(signum).name, child.pid)
        child.send_signal(signum)

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, forward)
    rc = child.wait()
    code = exit_code(rc, message)
    log.info("trainer exited %d; container exit code %d", rc, code)
    sys.exit(code)


if __name__ == "__main__":
    main()
