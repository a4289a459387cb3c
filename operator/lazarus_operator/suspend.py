"""spec.suspend: stop the pods gracefully (they save on SIGTERM), then say Suspended."""

from __future__ import annotations

from . import status as s
from .teardown import teardown
from .vocabulary import Decision, Facts


def _settled(f: Facts) -> bool:
    old = f.state.condition(s.COND_SUSPENDED)
    return old is not None and old.reason == s.R_SUSPENDED


def needs_selection(f: Facts) -> bool:
    """Pods gone, not yet said Suspended: status should name the checkpoint they
    saved on SIGTERM, not an older one."""
    return not f.pods and not _settled(f) and f.state.attempt > 0


def decide(f: Facts, d: Decision) -> None:
    st = d.state
    st.pending_restart = None
    gone = teardown(f, d, f.pods)
    if needs_selection(f) and not f.answered:
        d.wait_for_store()
        return
    st.phase = s.SUSPENDED
    reason = s.R_SUSPENDED if gone else s.R_SUSPENDING
    msg = "suspended; no pods" if gone else "stopping pods (they save on SIGTERM)"
    old = f.state.condition(s.COND_SUSPENDED)
    if old is None or old.reason != reason:
        d.event("Normal", reason, msg)
    st.set_condition(s.COND_SUSPENDED, True, reason, msg, now=f.now)
    st.set_condition(s.COND_RUNNING, False, reason, msg, now=f.now)
