"""The automatic checkpoint interval against every fixed one, simulated over seeded failure
traces (issue 29). Pure: tests/bench/test_autointerval_sim.py holds it to tables.

    hack/python -m bench.autointerval_sim

A job needs `work` seconds of compute. Failures arrive as a Poisson process in the time
the job is up (seeded gaps); each one loses the compute since the last durable
checkpoint and costs `restart` seconds down. A save costs training `cost` seconds at its
capture (an async save's stall plus its slowdown of the steps beside it, summed) and is
durable `durable` seconds after the capture: a failure before that loses it too.

`auto` knows neither the rate nor the cost at the start, as a new job does not: it saves
first after the lower bound, measures the cost there, and from then on follows
lazarus_contract.interval.auto_interval with the rate the operator's estimator
(lazarus_operator.failure_rate.estimate: the prior, then the job's own failures over
its up time) gives at that moment. A fixed interval is swept over a geometric grid and
judged on the same traces, so the best fixed one is an oracle's choice.

Start-up is modelled as the operator and the trainer count it: the restart is down time,
in which no failure strikes and which is not exposure (failure_rate.job_exposure counts
from each attempt's first step, bench/goodput_auto.py crashes attempts after steps of
training), and up time includes the saves' stalls (the trainer's pace includes them). The
measured cost survives a restart, as the trainer resumes with the cost its checkpoint
recorded (autointerval.AutoSchedule.resumed).
"""

from __future__ import annotations

import math
import random
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from lazarus_contract.interval import Bounds, auto_interval
from lazarus_operator.failure_rate import Exposure, estimate

# (up seconds so far, failures so far, measured save cost or None) -> interval seconds
Policy = Callable[[float, int, float | None], float]


@dataclass(frozen=True)
class Setup:
    mtbf: float
    cost: float
    durable: float
    restart: float
    work: float


def trace(seed: int, mtbf: float, horizon: float) -> list[float]:
    """Seeded exponential gaps (up time between failures) covering `horizon` seconds."""
    rng = random.Random(seed)
    gaps: list[float] = []
    while sum(gaps) < horizon:
        gaps.append(rng.expovariate(1 / mtbf))
    return gaps


def simulate(s: Setup, gaps: Sequence[float], policy: Policy) -> float:
    """Wall seconds until `s.work` seconds of compute are done under `policy`."""
    wall = up = progress = durable_progress = since = 0.0
    pending: tuple[float, float] | None = None  # (progress captured, up time it is durable)
    measured: float | None = None
    failures = 0
    fails = iter(gaps)
    next_fail = next(fails, math.inf)
    while progress < s.work:
        if pending is not None and pending[1] <= up:
            durable_progress, pending = pending[0], None
        interval = policy(up, failures, measured)
        due = since >= interval
        # Saves at once when due and none is in flight; a due one waits for the one in flight.
        to_save = interval - since if not due else (math.inf if pending else 0.0)
        run = min(s.work - progress, next_fail - up, to_save)
        if pending is not None:
            run = min(run, pending[1] - up)
        wall, up, progress, since = wall + run, up + run, progress + run, since + run
        if up >= next_fail:  # a failure: back to the last durable checkpoint, restart
            failures += 1
            next_fail = up + next(fails, math.inf)
            progress, since, pending = durable_progress, 0.0, None
            wall += s.restart
            continue
        if since >= interval and pending is None and progress < s.work:  # a save
            stall = min(s.cost, next_fail - up)
            wall, up = wall + stall, up + stall
            if stall < s.cost:
                continue  # the failure lands in the save: handled at the top
            pending, since, measured = (progress, up + s.durable - s.cost), 0.0, s.cost
    return wall


def fixed(interval: float) -> Policy:
    return lambda up, failures, cost: interval


def auto(bounds: Bounds, prior_mtbf: float) -> Policy:
    def policy(up: float, failures: int, cost: float | None) -> float:
        if cost is None:
            return bounds.min_seconds
        rate = estimate(Exposure(failures, up), Exposure(), prior_mtbf).rate
        return auto_interval(cost, rate, bounds)

    return policy


@dataclass(frozen=True)
class Result:
    setup: Setup
    auto: float  # mean goodput, work / wall
    best: float
    best_interval: float
    worst: float
    worst_interval: float


def goodput(s: Setup, traces: Sequence[Sequence[float]], policy: Policy) -> float:
    return statistics.fmean(s.work / simulate(s, g, policy) for g in traces)


def compare(
    s: Setup, seeds: Sequence[int], bounds: Bounds, prior_mtbf: float, grid: int = 25
) -> Result:
    """`auto` against fixed intervals from 1/10 to 10x Young's, on the same traces."""
    traces = [trace(seed, s.mtbf, 20 * s.work) for seed in seeds]
    young = math.sqrt(2 * s.cost * s.mtbf)
    sweep = {
        t: goodput(s, traces, fixed(t))
        for t in (young * 10 ** (2 * i / (grid - 1) - 1) for i in range(grid))
    }
    best = max(sweep, key=lambda t: sweep[t])
    worst = min(sweep, key=lambda t: sweep[t])
    a = goodput(s, traces, auto(bounds, prior_mtbf))
    return Result(s, a, sweep[best], best, sweep[worst], worst)


HOUR = 3600.0
SETUPS = (  # MTBFs 1-16 h, save costs 10-300 s; each job runs 60 MTBFs of compute
    Setup(mtbf=1 * HOUR, cost=10.0, durable=60.0, restart=120.0, work=60 * HOUR),
    Setup(mtbf=1 * HOUR, cost=120.0, durable=300.0, restart=300.0, work=60 * HOUR),
    Setup(mtbf=4 * HOUR, cost=30.0, durable=120.0, restart=300.0, work=240 * HOUR),
    Setup(mtbf=16 * HOUR, cost=300.0, durable=600.0, restart=600.0, work=960 * HOUR),
)
PRIOR_MTBF = 4 * HOUR  # one prior for all: 4x off at the extremes
BOUNDS = Bounds(60.0, 12 * HOUR)


# bench/goodput_auto.py's regime (docs/performance.md): 0.22 s steps, 140 of them, its
# traces' MTBFs (20 and 80 steps), its prior (30 s) and bounds; seed 9's crash points.
BENCH_STEP = 0.22
BENCH_MTBFS = {"frequent": 20 * BENCH_STEP, "rare": 80 * BENCH_STEP}
BENCH_SEED9 = {"frequent": (12, 9, 5, 40, 5, 14), "rare": (68, 45)}
BENCH_PRIOR, BENCH_BOUNDS = 30.0, Bounds(1.0, 3600.0)


def bench_regime(trace_name: str, cost: float) -> tuple[float, float]:
    """Auto over the best fixed interval: over 40 seeded traces, and on seed 9's own
    crash points against the best of everySteps 5, 15 and 50 picked on that trace."""
    s = Setup(BENCH_MTBFS[trace_name], cost, durable=1.0, restart=5.0, work=140 * BENCH_STEP)
    r = compare(s, range(40), BENCH_BOUNDS, BENCH_PRIOR)
    gaps = [n * BENCH_STEP for n in BENCH_SEED9[trace_name]]
    fixed_best = max(simulate(s, gaps, fixed(n * BENCH_STEP)) ** -1 for n in (5, 15, 50))
    realised = simulate(s, gaps, auto(BENCH_BOUNDS, BENCH_PRIOR)) ** -1 / fixed_best
    return r.auto / r.best, realised


def main() -> None:
    print("| MTBF h | cost s | auto | best fixed (interval s) | worst fixed (interval s) |")
    print("|---|---|---|---|---|")
    for s in SETUPS:
        r = compare(s, range(40), BOUNDS, PRIOR_MTBF)
        print(
            f"| {s.mtbf / HOUR:g} | {s.cost:g} | {r.auto:.4f} | {r.best:.4f} "
            f"({r.best_interval:.0f}) | {r.worst:.4f} ({r.worst_interval:.0f}) |"
        )
    print("\n| goodput_auto trace | cost s | auto / best, 40 traces | on seed 9's crashes |")
    print("|---|---|---|---|")
    for name in BENCH_MTBFS:
        for cost in (0.1, 0.25):
            mean, realised = bench_regime(name, cost)
            print(f"| {name} | {cost:g} | {mean:.3f} | {realised:.3f} |")


if __name__ == "__main__":
    main()
