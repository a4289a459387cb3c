"""The automatic save interval as tables: Daly's formula and its bounds, the rate
annotation's format, the save cost the trainer measures from its step boundaries, the
schedule it follows, the save policy with it, and the annotations file it reads."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from lazarus_contract.interval import (
    ANNOTATION_FAILURE_RATE,
    TIMINGS_FAILURES_PER_HOUR,
    TIMINGS_INTERVAL,
    TIMINGS_SAVE_COST,
    Bounds,
    auto_interval,
    daly_interval,
    format_rate,
    parse_rate,
)
from lazarus_trainer.autointerval import AutoSchedule, SaveCost, schedule_for
from lazarus_trainer.config import LazarusConfig
from lazarus_trainer.requests import CheckpointRequestWatcher
from lazarus_trainer.save_policy import Act, Agreed, Reason, SavePolicy
from lazarus_trainer.termination import PermanentError

pytestmark = pytest.mark.unit

HOUR = 3600.0


@pytest.mark.parametrize(
    ("cost", "rate", "expected"),
    [
        # Young's sqrt(2 C M) plus Daly's correction, worked by hand: C=10 s, M=1 h
        # x = 10/7200; sqrt(72000) * (1 + sqrt(x)/3 + x/9) - 10
        (10.0, 1 / HOUR, math.sqrt(72000) * (1 + math.sqrt(10 / 7200) / 3 + 10 / 7200 / 9) - 10),
        (0.0, 1 / HOUR, 0.0),  # a free save: save at every chance
        (10.0, 0.0, math.inf),  # no failures: never
        (100.0, 1 / 50.0, 50.0),  # C >= 2 M: Daly's limit, the MTBF
    ],
)
def test_daly_interval(cost: float, rate: float, expected: float) -> None:
    assert daly_interval(cost, rate) == pytest.approx(expected)


def test_daly_is_near_young_when_the_save_is_cheap() -> None:
    young = math.sqrt(2 * 1.0 * 24 * HOUR)
    assert daly_interval(1.0, 1 / (24 * HOUR)) == pytest.approx(young, rel=0.01)


@pytest.mark.parametrize(("cost", "rate"), [(-1.0, 0.1), (1.0, -0.1), (math.nan, 0.1)])
def test_daly_refuses_nonsense(cost: float, rate: float) -> None:
    with pytest.raises(ValueError, match="finite and >= 0"):
        daly_interval(cost, rate)


@pytest.mark.parametrize(
    ("cost", "rate", "expected"),
    [
        (10.0, 100 / HOUR, 60.0),  # a burst: not below the lower bound
        (10.0, 0.0, 6 * HOUR),  # a quiet start: not above the upper bound
        (10.0, 1 / HOUR, daly_interval(10.0, 1 / HOUR)),  # inside: Daly's
    ],
)
def test_auto_interval_is_bounded(cost: float, rate: float, expected: float) -> None:
    assert auto_interval(cost, rate, Bounds()) == pytest.approx(expected)


@pytest.mark.parametrize(("lo", "hi"), [(0.0, 10.0), (20.0, 10.0), (-1.0, 5.0)])
def test_bounds_refuse_an_empty_range(lo: float, hi: float) -> None:
    with pytest.raises(ValueError, match="0 < min <= max"):
        Bounds(lo, hi)


@pytest.mark.parametrize(
    ("text", "per_second"),
    [
        ("0.25", 0.25 / HOUR),
        (" 3 ", 3 / HOUR),
        ("0", 0.0),
        (format_rate(1 / 7200), 0.5 / HOUR),
        (None, None),
        ("", None),
        ("fast", None),
        ("-1", None),
        ("inf", None),
        ("nan", None),
    ],
)
def test_parse_rate(text: str | None, per_second: float | None) -> None:
    got = parse_rate(text)
    assert got == (None if per_second is None else pytest.approx(per_second))


def feed(cost: SaveCost, boundaries: list[tuple[float, bool]]) -> None:
    for now, busy in boundaries:
        cost.step(now, busy)


def test_save_cost_is_the_stall_plus_the_slowdown_beside_the_save() -> None:
    c = SaveCost()
    feed(c, [(0.0, False), (1.0, False), (2.0, False)])  # 1 s steps
    c.started(0.3)  # captured at t=2, training waited 0.3 s
    # The step after the capture holds the stall (1.3 s); two slowed steps (1.2 s each).
    feed(c, [(3.3, True), (4.5, True), (5.7, True), (6.7, False)])
    assert c.cost == pytest.approx(0.3 + 0.2 + 0.2)
    assert c.baseline == pytest.approx(1.0)


def test_a_synchronous_save_costs_its_whole_time() -> None:
    c = SaveCost()
    feed(c, [(0.0, False), (1.0, False), (2.0, False)])
    c.started(2.5)  # sync: the whole save in the stall, nothing in flight after
    feed(c, [(5.5, False), (6.5, False)])
    assert c.cost == pytest.approx(2.5)


def test_the_stall_is_a_floor_and_costs_are_smoothed() -> None:
    c = SaveCost()
    feed(c, [(0.0, False), (1.0, False), (2.0, False)])
    c.started(0.5)
    feed(c, [(2.9, True), (3.9, False)])  # the step ran faster than the pace: stall only
    assert c.cost == pytest.approx(0.5)
    c.started(1.5)  # at 3.9
    feed(c, [(6.4, True), (7.4, False)])
    assert c.cost == pytest.approx(0.5 + 0.5 * (1.5 - 0.5))


def test_no_cost_before_a_save_was_measured() -> None:
    c = SaveCost()
    feed(c, [(0.0, False), (1.0, False)])
    assert c.cost is None


def test_schedule_waits_for_a_rate_and_a_cost() -> None:
    s = AutoSchedule(Bounds(10.0, 1000.0), first=30.0)
    assert s.every() == 30.0  # the user's everySeconds first
    s.rate = 1 / 500
    assert s.every() == 30.0  # no cost yet
    s.cost.cost = 2.0
    assert s.every() == pytest.approx(daly_interval(2.0, 1 / 500))
    assert s.facts() == {
        TIMINGS_INTERVAL: round(s.every(), 3),
        TIMINGS_SAVE_COST: 2.0,
        TIMINGS_FAILURES_PER_HOUR: 7.2,
    }
    assert AutoSchedule(Bounds(10.0, 1000.0)).every() == 10.0  # no everySeconds: the floor


def manifest_extra(**timings: object) -> dict[str, object]:
    return {"lazarusTrainer": {"timings": timings}}


@pytest.mark.parametrize(
    ("extra", "cost", "rate"),
    [
        # an earlier attempt measured 2 s and had 7.2 failures an hour: start from those
        (manifest_extra(saveCostSeconds=2.0, failuresPerHour=7.2), 2.0, 7.2 / HOUR),
        (manifest_extra(saveCostSeconds=2.0), 2.0, None),  # it had no rate yet
        (manifest_extra(stallSeconds=0.3), None, None),  # a fixed schedule's checkpoint
        (manifest_extra(saveCostSeconds="2", failuresPerHour=-1), None, None),  # not ours
        ({}, None, None),  # another writer's manifest
    ],
)
def test_a_resumed_schedule_starts_from_the_checkpoints_record(
    extra: dict[str, object], cost: float | None, rate: float | None
) -> None:
    s = AutoSchedule(Bounds(10.0, 1000.0), first=30.0)
    s.resumed(extra)
    assert s.cost.cost == cost and s.rate == (pytest.approx(rate) if rate else None)
    if cost is not None and rate is not None:
        assert s.every() == pytest.approx(daly_interval(cost, rate))  # not `first` again


def test_a_resumed_schedule_keeps_what_this_attempt_measured() -> None:
    s = AutoSchedule(Bounds(10.0, 1000.0))
    s.cost.cost, s.rate = 5.0, 1 / HOUR
    s.resumed(manifest_extra(saveCostSeconds=2.0, failuresPerHour=7.2))
    assert (s.cost.cost, s.rate) == (5.0, 1 / HOUR)


def cfg(**kw: object) -> LazarusConfig:
    return LazarusConfig(checkpoint_uri="/tmp/x", **kw)  # type: ignore[arg-type]


def test_schedule_for_config() -> None:
    assert schedule_for(cfg()) is None
    s = schedule_for(cfg(save_auto=True, save_auto_min_seconds=5.0, save_every_seconds=20.0))
    assert s is not None and s.bounds == Bounds(5.0, 6 * HOUR) and s.first == 20.0
    with pytest.raises(PermanentError, match="bounds must be 0 < min <= max"):
        schedule_for(cfg(save_auto=True, save_auto_min_seconds=50.0, save_auto_max_seconds=5.0))


def test_policy_with_auto_follows_the_interval_not_the_steps() -> None:
    pol = SavePolicy(cfg(save_auto=True, save_auto_min_seconds=1.0, save_every_steps=2), now=0.0)
    # every 2 steps is off; the first interval is the floor, 1 s
    assert pol.at_boundary(2, Agreed()).act is Act.NOTHING
    assert not pol.time_due(0.5)
    assert pol.time_due(1.0)
    assert pol.at_boundary(3, Agreed(time_due=True)).reason == Reason.PERIODIC
    pol.started(1.0, stall=2.0)  # a synchronous save: training waited 2 s
    assert not pol.time_due(1.5)  # the step that held it
    # a rate arrives with a boundary; the save's cost is known: Daly's interval from now on
    assert not pol.time_due(2.0, rate=1 / 100)
    assert pol.auto is not None and pol.auto.cost.cost == pytest.approx(2.0)
    every = daly_interval(2.0, 1 / 100)
    assert not pol.time_due(1.0 + every - 0.01)
    assert pol.time_due(1.0 + every)
    assert not pol.time_due(1.0 + every, rate=1 / 10_000)  # a lower rate: later


def test_policy_without_auto_is_unchanged() -> None:
    pol = SavePolicy(cfg(save_every_seconds=5.0, save_every_steps=2), now=0.0)
    assert pol.at_boundary(2, Agreed()).reason == Reason.PERIODIC
    assert not pol.time_due(4.0, rate=100.0) and pol.time_due(5.0)


def test_watcher_reads_the_rate_and_keeps_the_last_good_one(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    f = tmp_path / "annotations"
    f.write_text(f'{ANNOTATION_FAILURE_RATE}="0.5"\n')
    w = CheckpointRequestWatcher(f, min_interval=0.0)
    assert w.failure_rate == pytest.approx(0.5 / HOUR)
    f.write_text(f'{ANNOTATION_FAILURE_RATE}="2"\n')
    assert not w.poll()
    assert w.failure_rate == pytest.approx(2 / HOUR)
    f.write_text(f'{ANNOTATION_FAILURE_RATE}="lots"\n')
    w.poll()
    w.poll()
    assert w.failure_rate == pytest.approx(2 / HOUR)
    said = [r for r in caplog.records if "is not failures per hour" in r.getMessage()]
    assert len(said) == 1
