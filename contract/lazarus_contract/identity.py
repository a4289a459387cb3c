"""A job's identity (docs/contract.md sections 1, 2, 6 and 8): the TrainingJob's name,
namespace and UID. The operator puts it in every trainer's environment; the trainer
records it in each manifest's `job` and in its fence record; the ownership rule compares
it. One shape for all of them, with its encoding.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from . import ENV_JOB_NAME, ENV_JOB_NAMESPACE, ENV_JOB_UID

KEYS = ("name", "namespace", "uid")


@dataclass(frozen=True)
class JobIdentity:
    """The TrainingJob a checkpoint or an attempt belongs to; empty strings: made by hand."""

    name: str = ""
    namespace: str = ""
    uid: str = ""

    def encode(self) -> dict[str, str]:
        """The JSON object (`{name, namespace, uid}`) of a manifest's or a fence record's `job`."""
        return {"name": self.name, "namespace": self.namespace, "uid": self.uid}

    def env(self) -> list[tuple[str, str]]:
        """The trainer's environment variables that carry it (section 2)."""
        return [
            (ENV_JOB_NAME, self.name),
            (ENV_JOB_NAMESPACE, self.namespace),
            (ENV_JOB_UID, self.uid),
        ]

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> JobIdentity:
        """The identity the operator gave this trainer (empty strings when run by hand)."""
        keys = (ENV_JOB_NAME, ENV_JOB_NAMESPACE, ENV_JOB_UID)
        return cls(*(environ.get(k, "") for k in keys))


def decode(raw: Any) -> JobIdentity | None:
    """The identity in a JSON `job` object; None unless it is `{name, namespace, uid}`
    strings (other keys are ignored). The caller decides whether None is an error."""
    if not isinstance(raw, Mapping) or not all(isinstance(raw.get(k), str) for k in KEYS):
        return None
    return JobIdentity(raw["name"], raw["namespace"], raw["uid"])
