"""A replica group's TCPStore (lazarus_trainer.ft): the operator sets MASTER_ADDR/PORT on
every pod, but only a torch world serves a store there; a plain process hosts its own."""

from __future__ import annotations

import socket

import pytest

from lazarus_trainer.distributed import Collectives
from lazarus_trainer.ft import FaultTolerance

from .ft_harness import free_port

pytestmark = pytest.mark.unit


def test_a_plain_process_hosts_its_own_store_despite_master_addr(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    nobody = free_port()  # what the operator's MASTER_PORT names: nothing listens there
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", str(nobody))
    monkeypatch.delenv("TORCHELASTIC_RUN_ID", raising=False)
    host, port = FaultTolerance._group_store(Collectives())
    assert port != nobody
    socket.create_connection((host, port), timeout=5).close()  # and it serves


def test_under_torchrun_the_group_uses_the_agents_store(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MASTER_ADDR", "10.0.0.7")
    monkeypatch.setenv("MASTER_PORT", "29500")
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "job")
    assert FaultTolerance._group_store(Collectives()) == ("10.0.0.7", 29500)
