"""Fault-tolerant replica groups (torchft): the names the operator sets and the trainer
and the lighthouse read (docs/contract.md section 2, docs/fault-tolerance.md)."""

from __future__ import annotations

from typing import Final

# Set on every pod of a replica group; LAZARUS_FT_LIGHTHOUSE turns the mode on.
ENV_FT_LIGHTHOUSE: Final = "LAZARUS_FT_LIGHTHOUSE"  # http://<lighthouse service>:<port>
ENV_FT_REPLICA_GROUP: Final = "LAZARUS_FT_REPLICA_GROUP"  # this group's index, 0..N-1
ENV_FT_GROUPS: Final = "LAZARUS_FT_GROUPS"  # N, the job's replica groups
ENV_FT_MIN_GROUPS: Final = "LAZARUS_FT_MIN_GROUPS"  # groups a step needs; default majority
# "1" on a group started to replace a failed one: it joins its live peers and reads no
# checkpoint (its state comes from a peer); a whole-job restart leaves it unset.
ENV_FT_REPLACEMENT: Final = "LAZARUS_FT_REPLACEMENT"
# The lighthouse's own settings (python -m lazarus_trainer.lighthouse).
ENV_FT_LIGHTHOUSE_PORT: Final = "LAZARUS_FT_LIGHTHOUSE_PORT"
ENV_FT_HEARTBEAT_TIMEOUT_MS: Final = "LAZARUS_FT_HEARTBEAT_TIMEOUT_MS"
ENV_FT_JOIN_TIMEOUT_MS: Final = "LAZARUS_FT_JOIN_TIMEOUT_MS"

DEFAULT_LIGHTHOUSE_PORT: Final = 29510
DEFAULT_HEARTBEAT_TIMEOUT_MS: Final = 1000
DEFAULT_JOIN_TIMEOUT_MS: Final = 1000
# A group's exit when, as a replacement, it found no live peer to take the state from:
# the operator falls back to a whole-job restart from the newest checkpoint.
EXIT_FT_NO_PEER: Final = 76


def majority(groups: int) -> int:
    """The fewest groups a quorum needs so that two disjoint sets of groups can never each
    form one (two lighthouses alive at once, e.g. the old pod on a partitioned node)."""
    return groups // 2 + 1


def check_min_groups(groups: int, min_groups: int) -> str | None:
    """None when `min_groups` of `groups` is usable, else why not (one line)."""
    if groups < 1:
        return f"{ENV_FT_GROUPS}={groups}: a job has at least one replica group"
    if not 1 <= min_groups <= groups:
        return f"{ENV_FT_MIN_GROUPS}={min_groups} must be between 1 and {ENV_FT_GROUPS}={groups}"
    return None
