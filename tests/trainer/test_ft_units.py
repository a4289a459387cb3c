"""Fault-tolerant replica groups' pure parts: settings, the lighthouse launcher, the
per-step data shares (docs/fault-tolerance.md)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from lazarus_contract.ft import majority
from lazarus_trainer.ft import FtSettings
from lazarus_trainer.ft_sampler import ReplicaGroupSampler
from lazarus_trainer.lighthouse import SettingError, load_extension, settings
from lazarus_trainer.termination import PermanentError

from .harness import REPO

pytestmark = pytest.mark.unit

FT = {"LAZARUS_FT_LIGHTHOUSE": "http://lh:29510", "LAZARUS_FT_REPLICA_GROUP": "1"}


@pytest.mark.parametrize(("groups", "quorum"), [(1, 1), (2, 2), (3, 2), (4, 3), (5, 3), (8, 5)])
def test_the_default_quorum_is_a_majority(groups: int, quorum: int) -> None:
    assert majority(groups) == quorum
    ft = FtSettings.from_env(
        {**FT, "LAZARUS_FT_GROUPS": str(groups), "LAZARUS_FT_REPLICA_GROUP": "0"}
    )
    assert ft is not None and ft.min_groups == quorum
    assert settings({"LAZARUS_FT_GROUPS": str(groups)})["min_replicas"] == quorum


@pytest.mark.parametrize(
    ("env", "error"),
    [
        ({"LAZARUS_FT_GROUPS": "two"}, "LAZARUS_FT_GROUPS='two' is not an integer"),
        ({"LAZARUS_FT_GROUPS": "2", "LAZARUS_FT_MIN_GROUPS": "3"}, "must be between 1 and"),
        ({"LAZARUS_FT_GROUPS": "2", "LAZARUS_FT_MIN_GROUPS": "0"}, "must be between 1 and"),
        ({"LAZARUS_FT_GROUPS": "2", "LAZARUS_FT_REPLICA_GROUP": "2"}, "must be between 0 and 1"),
        ({"LAZARUS_FT_GROUPS": "0"}, "at least one replica group"),
    ],
)
def test_bad_settings_are_one_line_errors(env: dict[str, str], error: str) -> None:
    with pytest.raises(PermanentError, match=error):
        FtSettings.from_env({**FT, **env})


def test_the_mode_is_off_without_a_lighthouse() -> None:
    assert FtSettings.from_env({"LAZARUS_FT_GROUPS": "2"}) is None


def test_the_lighthouse_refuses_a_bad_setting_in_one_line() -> None:
    with pytest.raises(SettingError, match="LAZARUS_FT_MIN_GROUPS=5 must be between 1 and"):
        settings({"LAZARUS_FT_GROUPS": "4", "LAZARUS_FT_MIN_GROUPS": "5"})
    env = {**os.environ, "PYTHONPATH": f"{REPO / 'contract'}:{REPO / 'trainer_image'}"}
    env.pop("LAZARUS_FT_GROUPS", None)
    out = subprocess.run(
        [sys.executable, "-m", "lazarus_trainer.lighthouse"],
        check=False,
        env=env,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 78
    assert out.stderr.strip().splitlines() == ["lighthouse: LAZARUS_FT_GROUPS='' is not an integer"]


def test_the_lighthouse_loads_torchft_without_torch() -> None:
    code = (
        "import sys; from lazarus_trainer.lighthouse import load_extension; "
        "ext = load_extension(); s = ext.LighthouseServer(bind='[::]:0', min_replicas=1); "
        "print(s.address()); s.shutdown(); "
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'torch'))"
    )
    env = {**os.environ, "PYTHONPATH": f"{REPO / 'contract'}:{REPO / 'trainer_image'}"}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    address, torch_modules = out.stdout.strip().splitlines()
    assert address.startswith("http://")
    assert torch_modules == "[]"


def shares(sampler: ReplicaGroupSampler, rank: int | None, participants: int) -> list[int]:
    sampler.attach(lambda: (rank, participants))
    return sampler.next_batch()


def test_each_step_shares_the_next_samples_among_the_participants() -> None:
    a, b = ReplicaGroupSampler(40, 4, shuffle=False), ReplicaGroupSampler(40, 4, shuffle=False)
    assert (shares(a, 0, 2), shares(b, 1, 2)) == ([0, 1, 2, 3], [4, 5, 6, 7])
    a.advance()
    b.advance()
    assert shares(a, 0, 1) == [8, 9, 10, 11]  # b is gone: a takes the next samples alone
    a.advance()
    assert a.state_dict() == {"epoch": 0, "offset": 12, "seed": 0}


def test_an_uncommitted_step_is_drawn_again() -> None:
    s = ReplicaGroupSampler(40, 4, shuffle=False)
    assert shares(s, 1, 2) == [4, 5, 6, 7]
    assert shares(s, 0, 1) == [0, 1, 2, 3]  # the step did not commit: no advance()


def test_a_healing_group_advances_from_the_position_it_receives() -> None:
    peer, healer = (
        ReplicaGroupSampler(40, 4, shuffle=False),
        ReplicaGroupSampler(40, 4, shuffle=False),
    )
    for _ in range(3):
        shares(peer, 0, 1)
        peer.advance()
    shares(healer, None, 1)  # drawn before the peer's state arrives; does not count
    assert not healer.participating
    healer.load_state_dict(peer.state_dict())
    shares(peer, 0, 1)
    peer.advance()
    healer.advance()
    assert healer.state_dict() == peer.state_dict() == {"epoch": 0, "offset": 16, "seed": 0}


def test_a_tail_too_short_for_the_step_starts_the_next_epoch() -> None:
    s = ReplicaGroupSampler(10, 4, shuffle=False)
    shares(s, 0, 2)
    s.advance()
    assert shares(s, 1, 2) == [4, 5, 6, 7]  # epoch 1 from its start: 8..9 dropped
    s.advance()
    assert (s.epoch, s.offset) == (1, 8)


def test_a_loop_that_never_joins_a_quorum_is_refused_in_one_line(tmp_path: Path) -> None:
    """lz.step() in fault-tolerant mode with the optimizer left unwrapped would never count
    a step (none commits): refused, exit 78, with what to do."""
    lighthouse = load_extension().LighthouseServer(bind="[::]:0", min_replicas=1)
    try:
        code = "from lazarus_trainer import Lazarus; Lazarus().step()"
        env = {
            **os.environ,
            "PYTHONPATH": ":".join(str(REPO / p) for p in ("contract", "store", "trainer_image")),
            "LAZARUS_CHECKPOINT_URI": str(tmp_path / "ckpt"),
            "LAZARUS_TERMINATION_LOG": str(tmp_path / "term"),
            "LAZARUS_FT_LIGHTHOUSE": lighthouse.address(),
            "LAZARUS_FT_GROUPS": "1",
            "LAZARUS_FT_REPLICA_GROUP": "0",
        }
        out = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False
        )
    finally:
        lighthouse.shutdown()
    assert out.returncode == 78
    assert "wrap the optimizer with lz.ft.wrap_optimizer()" in (tmp_path / "term").read_text()
