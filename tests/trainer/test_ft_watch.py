"""What a replica group sees of its peers' failures (ft_watch.QuorumWatch), as tables:
committed steps (time, participants) in, the stall and the rejoin time out."""

from __future__ import annotations

import pytest

from lazarus_contract.timings import decode
from lazarus_trainer.ft_watch import QuorumWatch

pytestmark = pytest.mark.unit

STEADY = [(t * 0.01, 2) for t in range(10)]  # 10 ms steps, both groups


@pytest.mark.parametrize(
    ("steps", "want"),
    [
        (STEADY, {}),
        (  # group 1 dies at 0.09: 1.05 s until the survivor commits alone, back at 6.09
            [*STEADY, (1.14, 1), (1.15, 1), (6.09, 2), (6.10, 2)],
            {"ftStallSeconds": 1.05, "ftRejoinSeconds": 6.0},
        ),
        (  # not back yet: the stall only
            [*STEADY, (1.14, 1), (1.15, 1)],
            {"ftStallSeconds": 1.05},
        ),
        (  # two failures before the save: the longest stall, the last rejoin
            [*STEADY, (1.14, 1), (3.0, 2), (3.01, 2), (3.51, 1), (9.01, 2)],
            {"ftStallSeconds": 1.05, "ftRejoinSeconds": 6.0},
        ),
        (  # a group that starts late is no failure: the quorum grows
            [(0.0, 1), (0.01, 1), (0.5, 2), (0.51, 2)],
            {},
        ),
    ],
)
def test_a_failure_is_a_stall_then_a_rejoin(
    steps: list[tuple[float, int]], want: dict[str, float]
) -> None:
    w = QuorumWatch()
    for t, n in steps:
        w.commit(t, n)
    assert w.drain() == pytest.approx(want)
    assert w.drain() == {}  # said once, with one save


def test_the_timings_carry_them_to_the_operator() -> None:
    w = QuorumWatch()
    for t, n in [*STEADY, (1.14, 1), (6.09, 2)]:
        w.commit(t, n)
    got = decode({"lazarusTrainer": {"timings": w.drain()}})
    assert got.ft_stall_seconds == pytest.approx(1.05)
    assert got.ft_rejoin_seconds == pytest.approx(6.0)
    bad = decode({"lazarusTrainer": {"timings": {"ftStallSeconds": -1, "ftRejoinSeconds": "x"}}})
    assert bad.ft_stall_seconds is None and bad.ft_rejoin_seconds is None
