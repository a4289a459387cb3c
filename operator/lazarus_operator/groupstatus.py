"""`status.faultTolerance`: what happened to a fault-tolerant job's replica groups.

Group replacements are counted apart from `status.restarts` (whole-job restarts): a
replacement is not a relaunch, and the budgets count it only past maxFailures
(groups.py). Generations say which pod is each group's current one in this attempt.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .records import LastFailure, Restarts, some


@dataclass
class LastReplacement:
    """The last group replaced: which, its new generation, and the end it answered (the
    ended pod's, recorded as lastFailure records an attempt's)."""

    group: int
    generation: int  # the replacement's
    end: LastFailure

    @classmethod
    def from_api(cls, d: Mapping[str, Any]) -> LastReplacement:
        end = LastFailure.from_api(dict(d))
        return cls(int(d.get("group") or 0), int(d.get("generation") or 0), end)

    def to_api(self) -> dict[str, Any]:
        return some({"group": self.group, "generation": self.generation, **self.end.to_api()})


@dataclass
class GroupStatus:
    # Per group, its current pod's generation in the running attempt ([] = all 0).
    generations: list[int] = field(default_factory=list)
    # Group pods replaced alone, by cause, and in all (`total`), over the job's life.
    replacements: Restarts = field(default_factory=Restarts)
    lighthouse_restarts: int = 0
    last_replacement: LastReplacement | None = None

    def generation(self, group: int) -> int:
        return self.generations[group] if group < len(self.generations) else 0

    def replace(self, group: int, groups: int) -> int:
        """Group `group` gets its next generation; returns it."""
        gens = [self.generation(g) for g in range(groups)]
        gens[group] += 1
        self.generations = gens
        return gens[group]

    @classmethod
    def from_api(cls, d: Mapping[str, Any]) -> GroupStatus:
        last = d.get("lastReplacement")
        return cls(
            [int(g) for g in d.get("generations") or []],
            Restarts.from_api(d.get("replacements") or {}),
            int(d.get("lighthouseRestarts") or 0),
            LastReplacement.from_api(last) if last else None,
        )

    def to_api(self) -> dict[str, Any]:
        return some(
            {
                "generations": self.generations or None,
                "replacements": self.replacements.to_api() or None,
                "lighthouseRestarts": self.lighthouse_restarts or None,
                "lastReplacement": self.last_replacement.to_api()
                if self.last_replacement
                else None,
            }
        )
