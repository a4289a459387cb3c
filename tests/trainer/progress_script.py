"""A loop of fast steps that then blocks or ends, for the progress-signal tests.

    python progress_script.py STEPS MODE

MODE: `sleep` (user code that calls no step() for a while), `save` (a save stuck in
capture), `close` (close()'s final save stuck), `raise` (an uncaught exception),
`leave` (`leave(1)` after a caught one). Prints "blocked at N" before it blocks.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import torch

from lazarus_trainer import Lazarus
from lazarus_trainer.termination import leave


class Stuck:
    """Extra state whose capture hangs once `stuck` is set: a save that never ends."""

    stuck = False

    def state_dict(self) -> dict[str, Any]:
        while self.stuck:
            time.sleep(1)
        return {}

    def load_state_dict(self, state: dict[str, Any], /) -> None:
        pass


def main() -> None:
    steps, mode = int(sys.argv[1]), sys.argv[2]
    model = torch.nn.Linear(2, 2)
    stuck = Stuck()
    lz = Lazarus().register(model=model, extras={"stuck": stuck})
    lz.resume()
    for _ in range(steps):
        lz.step()
    stuck.stuck = True
    print(f"blocked at {lz.step_count}", flush=True)
    if mode == "sleep":
        time.sleep(600)
    elif mode == "save":
        lz.save()
    elif mode == "close":
        lz.close()
    elif mode == "raise":
        raise RuntimeError("the loop failed")
    elif mode == "leave":
        leave(1)


if __name__ == "__main__":
    main()
