"""How a run ends: a stop signal (a preemption save within the grace period, or a report
of why there is none) and the end of training (the final save); both leave a
`Termination`, which `close` writes as the termination message and turns into the exit code.
"""

from __future__ import annotations

import logging
import time

from .run_state import Context
from .save_pipeline import SavePipeline
from .save_policy import (
    Reason,
    StopPlan,
    committed_at,
    eval_shortfall,
    final_ok,
    grace_shortfall,
    in_flight_wait,
    stop_plan,
)
from .signals import SaveTimer, StopSignal
from .termination import Termination, write_termination

log = logging.getLogger("lazarus")

FINAL_SAVE_TRIES = 6  # the final save outlasts a short storage outage


class Stopper:
    def __init__(self, ctx: Context, signal: StopSignal, pipeline: SavePipeline) -> None:
        self.config = ctx.config
        self.dist = ctx.dist
        self.run = ctx.run
        self.signal = signal
        self.pipeline = pipeline
        self.eval_timer = SaveTimer()  # durations of past evaluations

    def evaluate_first(self) -> bool:
        """A stop at an evaluation step: True if the evaluation and the save after it fit in
        the grace left (then `stop` follows the evaluation). Otherwise end now with neither:
        a preemption checkpoint without this step's evaluation would resume differently from
        an uninterrupted run, the last checkpoint does not."""
        run = self.run
        deadline = (self.signal.received_at or time.monotonic()) + self.config.grace_seconds
        ev, sv = self.eval_timer.estimate(), self.pipeline.timer.estimate()
        remaining = deadline - time.monotonic()
        if not self.dist.main_decides(eval_shortfall(ev, sv, remaining)):
            return True
        run.should_stop = True
        self._finish_in_flight(deadline)
        why = self.signal.name if self.signal.received else "a stop on another rank"
        msg = (
            f"{why} at step {run.progress.step}, an evaluation step: {remaining:.1f}s of grace "
            f"left, the evaluation takes ~{ev or 0.0:.1f}s and a save ~{sv or 0.0:.1f}s; "
            f"neither started, so the resume replays from the last checkpoint "
            f"({run.parent or 'none'}) exactly"
        )
        log.error(msg)
        run.preempted(msg, grace_shortfall=True)
        return False

    def stop(self, *, fenced: bool) -> None:
        """Every rank agreed to stop at this boundary: save if the grace allows, then report."""
        run = self.run
        run.should_stop = True
        if fenced or run.termination is not None:
            if run.termination is None:
                run.preempted("fenced out by a newer attempt")
            return
        received = self.signal.received_at or time.monotonic()
        why = self.signal.name if self.signal.received else "a stop on another rank"
        deadline = received + self.config.grace_seconds
        self._finish_in_flight(deadline)
        step = run.progress.step
        committed = committed_at(run.last_committed, step)
        estimate = self.pipeline.timer.estimate()
        remaining = deadline - time.monotonic()
        # Rank 0's clock decides; asked only when a save is still needed, as every rank knows.
        shortfall = not committed and self.dist.main_decides(grace_shortfall(estimate, remaining))
        plan = stop_plan(committed, shortfall)
        if plan is StopPlan.COMMITTED:
            name = run.last_committed[0] if run.last_committed else "?"
            run.preempted(
                f"{why} at step {step}; checkpoint {name} of this step already committed",
                saved_on_signal=True,
            )
        elif plan is StopPlan.SHORTFALL:
            msg = (
                f"{why} at step {step}: {remaining:.1f}s of grace left, a save takes "
                f"~{estimate or 0.0:.1f}s; not starting one (last checkpoint: "
                f"{run.parent or 'none'})"
            )
            log.error(msg)
            run.preempted(msg, grace_shortfall=True)
        else:
            self._preemption_save(why, step)

    def _finish_in_flight(self, deadline: float) -> None:
        """Wait for an in-flight save while a preemption save would still fit after it."""
        p = self.pipeline
        if not p.busy:
            return
        wait = in_flight_wait(deadline, time.monotonic(), p.timer.estimate())
        if p.collect(wait) is None:
            p.cancel()  # stop retrying; let it fail fast
            p.collect(None)

    def _preemption_save(self, why: str, step: int) -> None:
        t0 = time.monotonic()
        outcome = self.pipeline.save(Reason.PREEMPTION, sync=True)
        took = time.monotonic() - t0
        if outcome is not None and outcome.name is not None:
            msg = f"{why} at step {step}; preemption checkpoint committed in {took:.1f}s"
            self.run.preempted(msg, saved_on_signal=True)
        else:
            err = outcome.error if outcome else "?"
            msg = f"{why} at step {step}; preemption save failed: {err}"
            log.error(msg)
            self.run.preempted(msg)

    def close(self) -> int:
        """End of training (or after a stop): final save, termination message, exit code."""
        run = self.run
        term = run.termination
        if term is None:
            self.pipeline.collect(None)
            if self.config.save_at_end:
                self._final_save()
            step = run.progress.step
            ok = final_ok(self.config.save_at_end, committed_at(run.last_committed, step))
            term = run.termination = Termination(
                "completed" if ok else "error",
                step,
                run.last_committed,
                f"training finished at step {step}"
                if ok
                else f"training finished but the final save failed: {run.failed_saves[-1:]}",
            )
        if self.dist.is_local_leader:
            write_termination(term)
        return term.exit_code

    def _final_save(self) -> None:
        delay = self.config.retry_backoff
        for _ in range(FINAL_SAVE_TRIES):
            self.pipeline.save(Reason.FINAL, sync=True)
            if committed_at(self.run.last_committed, self.run.progress.step):
                return
            time.sleep(delay)
            delay *= 2
