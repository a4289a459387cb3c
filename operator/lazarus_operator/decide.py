"""The decision core: given the job, its pods, their nodes and the checkpoint
store's answer, what happens next? Pure; the cycle gathers the facts and carries
the actions out, writing the status first and the events last.

A cycle answers one question first, the job's stage (`jobstatus.Stage`), and hands
the rest to that stage's policy module:

  FINISHED   -> finished:  clean up, TTL;
  SUSPENDING -> suspend:   stop the pods gracefully (they save on SIGTERM);
  LAUNCHING  -> launch:    first start, or resume after a suspend;
  RESTARTING -> restart:   wait until the old pods are gone, back off, relaunch;
  ACTIVE     -> running:   create missing pods, checkpoint-now, read pod ends; an
                           end goes to failure_policy (budgets, backoff, cause).

A job labelled kueue.x-k8s.io/queue-name passes Kueue's gate first (`queued`): no
pods until its Workload is admitted, an eviction stops them like a suspend.

Some decisions need the store's answer (a launch, a failure's progress, the
suspend-time save): `needs_selection(facts)` says so, the caller asks the store,
then calls `decide` once with the answer in `Facts`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

from . import finished, launch, queued, restart, running, suspend
from .jobstatus import JobStatus, Stage, stage_of
from .selection import apply_selection
from .vocabulary import Decision, Facts


class _Policy(NamedTuple):
    needs_selection: Callable[[Facts], bool]
    decide: Callable[[Facts, Decision], None]


POLICIES: dict[Stage, _Policy] = {
    Stage.FINISHED: _Policy(finished.needs_selection, finished.decide),
    Stage.SUSPENDING: _Policy(suspend.needs_selection, suspend.decide),
    Stage.LAUNCHING: _Policy(launch.needs_selection, launch.decide),
    Stage.RESTARTING: _Policy(restart.needs_selection, restart.decide),
    Stage.ACTIVE: _Policy(running.needs_selection, running.decide),
}


def stage(f: Facts) -> Stage:
    return stage_of(f.state, f.spec.suspend)


def needs_selection(f: Facts) -> bool:
    """Whether this cycle's decision needs the store's answer (pure: call before `decide`)."""
    st = stage(f)
    if queued.holds(f, st):
        return False  # Kueue holds the job: no launch, and its eviction is no failure
    return POLICIES[st].needs_selection(f)


def decide(f: Facts) -> Decision:
    d = Decision(state=JobStatus.from_api(f.status))
    if f.answered:
        apply_selection(f, d)
    st = stage(f)
    if queued.holds(f, st):  # a job labelled for Kueue whose Workload is not admitted
        queued.decide(f, d, st)
    else:
        POLICIES[st].decide(f, d)
    queued.after(f, d, st)
    return d
