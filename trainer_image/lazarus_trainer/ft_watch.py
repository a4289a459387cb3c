"""What a replica group sees of its peers' failures (docs/fault-tolerance.md): per failure,
the survivors' stall (the gap between two committed steps around a quorum that lost a
group) and the time until the quorum is whole again (the failure's last committed step
to the first one the replacement joins). The writer records both with its next save
(manifest timings, contract section 4a); the operator turns them into metrics.
Pure: fed the time and participants of each committed step."""

from __future__ import annotations

from dataclasses import dataclass

from lazarus_contract.timings import FT_REJOIN_SECONDS, FT_STALL_SECONDS


@dataclass
class QuorumWatch:
    last_t: float | None = None  # the previous committed step's time
    last_n: int = 0  # ... and its participants
    whole: int = 0  # the most participants seen: a quorum of these is whole
    dropped_at: float | None = None  # the last step before the quorum shrank
    stall: float | None = None  # the longest since the last drain
    rejoin: float | None = None  # the last since the last drain

    def commit(self, t: float, participants: int) -> None:
        if self.last_t is not None and participants < self.last_n:
            self.stall = max(self.stall or 0.0, t - self.last_t)
            if self.dropped_at is None:
                self.dropped_at = self.last_t
        if self.dropped_at is not None and participants >= self.whole:
            self.rejoin, self.dropped_at = t - self.dropped_at, None
        self.whole = max(self.whole, participants)
        self.last_t, self.last_n = t, participants

    def drain(self) -> dict[str, float]:
        """What happened since the last drain, for a save's timings; then forget it."""
        out = {
            k: round(v, 4)
            for k, v in ((FT_STALL_SECONDS, self.stall), (FT_REJOIN_SECONDS, self.rejoin))
            if v is not None
        }
        self.stall = self.rejoin = None
        return out
