"""The automatic interval's operator side (spec.checkpoint.save.auto, docs/trainer.md):
estimate the job's failure rate, hand it to the running trainer in the pod annotation
`lazarus.dev/failure-rate` (contract section 5a), and show in `status.saveInterval` the
rate, the evidence it came from, and the interval and save cost the trainer chose.

The advertised rate moves only when the estimate moves by more than `MOVE`: status is not
rewritten and pods are not patched every cycle as the exposure grows.
Pure core (`plan`): tables in tests/operator/test_autosave.py.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from lazarus_contract.interval import ANNOTATION_FAILURE_RATE, decode_schedule, format_rate

from . import pods as p
from .failure_rate import Pool, estimate, job_exposure
from .jobstatus import JobStatus
from .spec import AutoSave
from .vocabulary import AnnotatePod, Decision, Facts

STATUS_KEY = "saveInterval"
MOVE = 0.10  # relative change of the estimate that is advertised
POOL = Pool()  # the namespaces' exposures, as this operator process computed them


@dataclass
class Plan:
    status: dict[str, Any]  # status.saveInterval
    annotate: list[AnnotatePod] = field(default_factory=list)


def _moved(old: Any, new: float) -> bool:
    if isinstance(old, bool) or not isinstance(old, int | float) or old <= 0:
        return True
    return abs(new - old) > MOVE * old


def plan(
    auto: AutoSave,
    job: tuple[str, str],
    st: JobStatus,
    *,
    pods: list[dict[str, Any]],
    now: datetime,
    pool: Pool,
    chosen: tuple[str, Mapping[str, Any]] | None = None,
) -> Plan:
    """`job`: (namespace, uid); `chosen`: the newest checkpoint's (name, extra), if read."""
    namespace, uid = job
    exposure = job_exposure(st, now)
    pool.record(namespace, uid, exposure)
    est = estimate(exposure, pool.others(namespace, uid), float(auto.prior_mtbf_seconds))
    old = st.extra.get(STATUS_KEY)
    out = dict(old) if isinstance(old, dict) else {}
    per_hour = est.rate * 3600
    if _moved(out.get("failuresPerHour"), per_hour):
        out.update(
            failuresPerHour=float(format_rate(est.rate)),
            source=est.source,
            failures=round(est.job.failures),
            exposureSeconds=round(est.job.seconds),
        )
    if chosen is not None and (facts := decode_schedule(chosen[1])):
        out.update(facts, checkpoint=chosen[0])
    value = format_rate(out["failuresPerHour"] / 3600)
    annotate = [
        AnnotatePod(p.name(pod), {ANNOTATION_FAILURE_RATE: value})
        for pod in pods
        if not p.deleting(pod)
        and ((pod.get("metadata") or {}).get("annotations") or {}).get(ANNOTATION_FAILURE_RATE)
        != value
    ]
    return Plan(out, annotate)


def advertise(f: Facts, d: Decision, pods: list[dict[str, Any]]) -> None:
    """The ACTIVE stage's part: the rate on the running attempt's pods, and status."""
    auto = f.spec.checkpoint.save_auto
    if not auto.enabled:
        return
    ck = f.selection.chosen if f.selection is not None else None
    chosen = (ck.name, ck.extra) if ck is not None else None
    job = (f.job.namespace, f.job.uid)
    got = plan(auto, job, d.state, pods=pods, now=f.now, pool=POOL, chosen=chosen)
    d.state.extra[STATUS_KEY] = got.status
    d.actions.extend(got.annotate)
