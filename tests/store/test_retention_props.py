"""Retention as a pure function, under random histories of saves, failures and metrics."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lazarus_store import Candidate, RetentionPolicy, plan_retention

pytestmark = pytest.mark.unit

GC_AGE = 100.0

# One event of a history: a save attempt and how it ended.
event = st.tuples(
    st.integers(1, 5),  # steps advanced since the previous save
    st.sampled_from(["ok", "ok", "ok", "crashed", "corrupt", "quarantined", "dead-branch"]),
    st.one_of(st.none(), st.floats(-10, 10), st.just(math.nan)),  # metric, if evaluated
    st.floats(0, 300),  # age at planning time
)
policies = st.builds(
    RetentionPolicy,
    keep_latest=st.integers(1, 4),
    keep_best=st.integers(0, 3),
    metric=st.just("loss"),
    mode=st.sampled_from(["min", "max"]),
    gc_age_s=st.just(GC_AGE),
)


def history(events: list[tuple[int, str, float | None, float]], now: float) -> list[Candidate]:
    out, step = [], 0
    for i, (gap, fate, metric, age) in enumerate(events):
        step += gap
        out.append(
            Candidate(
                name=f"step-{step:012d}-a{1 + i % 3:04d}",
                step=step,
                attempt=1 + i % 3,
                committed=fate != "crashed",
                valid=fate not in ("corrupt", "crashed"),
                quarantined=fate == "quarantined",
                in_lineage=fate != "dead-branch",
                metrics={} if metric is None else {"loss": metric},
                modified=now - age,
            )
        )
    return out


def usable(cands: list[Candidate]) -> list[Candidate]:
    return sorted(
        (c for c in cands if c.committed and c.valid and not c.quarantined and c.in_lineage),
        key=lambda c: (c.step, c.attempt),
        reverse=True,
    )


@settings(max_examples=400, deadline=None)
@given(events=st.lists(event, max_size=25), policy=policies, data=st.data())
def test_never_deletes_what_must_survive(
    events: list[tuple[int, str, float | None, float]], policy: RetentionPolicy, data: st.DataObject
) -> None:
    now = 10_000.0
    cands = history(events, now)
    resume = data.draw(st.sampled_from([None, *[c.name for c in cands]]))
    plan = plan_retention(cands, policy, resumed_from=resume, now=now)
    gone = set(plan.removals)
    by_name = {c.name: c for c in cands}
    good = usable(cands)

    assert len(gone) == len(plan.removals)  # nothing twice
    assert not gone & set(plan.keep)
    assert gone | set(plan.keep) == set(by_name)  # every prefix decided
    assert resume not in gone
    assert not good or good[0].name not in gone  # the newest valid in lineage
    for c in good[: policy.keep_latest]:
        assert c.name not in gone
    scored = [c for c in good if not math.isnan(c.metrics.get("loss", math.nan))]
    sign = 1 if policy.mode == "min" else -1
    scored.sort(key=lambda c: (sign * c.metrics["loss"], -c.step))
    for c in scored[: policy.keep_best]:
        assert c.name not in gone
    for name in gone:
        c = by_name[name]
        assert not c.quarantined
        if not c.committed or not c.in_lineage:
            assert now - c.modified >= GC_AGE  # in-progress saves survive the safety age
        else:
            assert c.valid  # invalid ones are left for inspection, not deleted
            assert any((g.step, g.attempt) > (c.step, c.attempt) for g in good)


@settings(max_examples=150, deadline=None)
@given(events=st.lists(event, min_size=1, max_size=30), policy=policies)
def test_pruning_after_every_save_keeps_a_resume_target(
    events: list[tuple[int, str, float | None, float]], policy: RetentionPolicy
) -> None:
    """Simulate a run: after each save, plan and delete; the resume target (the newest
    usable at the previous restart) and the newest usable checkpoint always survive."""
    alive: list[Candidate] = []
    resume: str | None = None
    saved: list[Candidate] = []
    now = 0.0
    for i, c in enumerate(history(events, now=0.0)):
        now = float(i * 50)
        alive.append(Candidate(**{**c.__dict__, "modified": now}))
        if i % 4 == 3:  # a restart: resume from the newest usable one
            good = usable(alive)
            resume = good[0].name if good else None
        plan = plan_retention(alive, policy, resumed_from=resume, now=now)
        newest_before = usable(alive)[:1]
        alive = [a for a in alive if a.name not in set(plan.removals)]
        names = {a.name for a in alive}
        if resume:
            assert resume in names
        assert usable(alive)[:1] == newest_before  # the newest usable one is never lost
        saved.extend(x for x in [c] if x.quarantined)
    assert {q.name for q in saved} <= {a.name for a in alive}  # quarantined ones stay


def test_policy_rejects_unsafe_settings() -> None:
    with pytest.raises(ValueError, match="keep_latest must be >= 1"):
        RetentionPolicy(keep_latest=0)
    with pytest.raises(ValueError, match="needs a metric"):
        RetentionPolicy(keep_best=1)
    with pytest.raises(ValueError, match="mode"):
        RetentionPolicy(mode="median")  # type: ignore[arg-type]
