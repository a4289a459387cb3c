"""Gather: a cycle's facts from the watch's view, each pod's end classified once, and
every policy reading that one classification."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any, cast

import pytest

from lazarus_operator import vocabulary
from lazarus_operator.builders import JobRef
from lazarus_operator.classify import Cause, PodEnd, classify
from lazarus_operator.decide import decide, needs_selection
from lazarus_operator.gather import Gatherer
from lazarus_operator.kube import Kube
from lazarus_operator.lanes import storage_lane
from lazarus_operator.podview import PodView
from lazarus_operator.spec import JobSpec, parse_spec
from lazarus_operator.vocabulary import Facts, Selection, StorageProblem
from lazarus_operator.watched import Watched

from .factories import NOW, job_spec, node, pod
from .test_decide import ck, launched

pytestmark = pytest.mark.unit
JOB = JobRef("job", "ns", "uid-1")


def _job(status: dict[str, Any]) -> dict[str, Any]:
    meta = {"name": "job", "namespace": "ns", "uid": "uid-1", "generation": 1}
    return {"metadata": meta, "spec": job_spec(), "status": status}


def _view(pods: list[dict[str, Any]]) -> PodView:
    # No pod is overdue and none was created by us: the view makes no API call.
    view = PodView(cast(Kube, None))
    nodes = {"n1": [node("n1")], "n2": [node("n2")]}
    view.watched = Watched(pods={("ns", "job"): pods}, nodes=nodes, services={})
    return view


def test_a_failed_attempt_classifies_each_pod_once_in_gather_and_decide(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The failure needs the store (did it make progress?), the booking reads the
    reported steps, the policy reads the ends: one classification serves them all."""
    calls: list[str] = []

    def counting(p: dict[str, Any], *a: Any, **kw: Any) -> PodEnd | None:
        calls.append(p["metadata"]["name"])
        return classify(p, *a, **kw)

    monkeypatch.setattr(vocabulary, "classify", counting)
    pods = [
        pod("job-a1-0", phase="Failed", exit_code=1, reason="Error", message={"step": 7}),
        pod("job-a1-1", node_name="n2"),
    ]
    asked: list[int | None] = []

    async def select(ref: JobRef, spec: JobSpec, attempt: int | None) -> Selection:
        asked.append(attempt)
        return Selection(ck(5), next_attempt=2)

    gatherer = Gatherer(_view(pods), storage_lane(), select, progress_interval=30.0)
    f = asyncio.run(gatherer.facts(_job(launched()), parse_spec(job_spec()), NOW, False))
    d = decide(f)

    assert asked == [2] and f.selection is not None  # the store was asked, for attempt 2
    assert d.state.pending_restart is not None and d.state.pending_restart.last_step == 7
    assert sorted(calls) == ["job-a1-0", "job-a1-1"]


def test_every_policy_reads_the_cycles_classification_not_the_pod() -> None:
    """A pod the classification says ended ends the attempt, whatever its body says:
    no policy classifies the pod again."""
    pods = [pod("job-a1-0"), pod("job-a1-1", node_name="n2")]
    spec = parse_spec(job_spec())
    nodes = {"n1": node("n1"), "n2": node("n2")}
    f = Facts(JOB, spec, launched(), pods, nodes, NOW)
    assert not needs_selection(f) and f.ends == {"job-a1-0": None, "job-a1-1": None}

    crashed = PodEnd(Cause.FAILED, "Error", "job-a1-0", "n1", 1, "crashed", 3, NOW)
    told = replace(f, pod_ends={"job-a1-0": crashed, "job-a1-1": None})
    assert needs_selection(told)
    d = decide(replace(told, selection=Selection(ck(5))))
    assert d.state.last_failure is not None and d.state.last_failure.pod == "job-a1-0"
    assert d.state.pending_restart is not None and d.state.pending_restart.last_step == 3


def test_a_storage_problem_is_a_fact_not_an_error() -> None:
    pods: list[dict[str, Any]] = []

    async def select(ref: JobRef, spec: JobSpec, attempt: int | None) -> StorageProblem:
        return StorageProblem("StorageUnavailable", "no route", retry=True)

    gatherer = Gatherer(_view(pods), storage_lane(), select, progress_interval=30.0)
    f = asyncio.run(gatherer.facts(_job({}), parse_spec(job_spec()), NOW, False))
    assert f.selection is None and f.storage_problem is not None
    assert decide(f).requeue_after == 10.0  # STORAGE_RETRY_S: asked again later
