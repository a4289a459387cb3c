"""A PEFT model's checkpoint under HF Trainer: the state that trains, not the frozen base.

HF's own checkpoints of a PeftModel hold the adapter alone and trust the base to be the same
on resume; Lazarus' hold every state-dict entry except the frozen parameters the base's
fingerprint covers (base_fingerprint.py), and a resume first checks that fingerprint. A
frozen parameter changed in place since setup (its version counter moved) or unfrozen is
saved again. A write through `p.data` moves no version counter and is not seen: the frozen
base must stay frozen in value too.
"""

from __future__ import annotations

import logging
from typing import Any

import torch

from ..base_fingerprint import FrozenBase
from ..termination import PermanentError

log = logging.getLogger(__name__)


class TrainableView(torch.nn.Module):
    """`model`'s state dict less its fingerprinted frozen parameters (registered as the
    model: captures and `load_best` see this view)."""

    def __init__(self, model: torch.nn.Module, base: FrozenBase, key: str = "model") -> None:
        super().__init__()
        object.__setattr__(self, "inner", model)  # not a submodule: its keys stay unprefixed
        self.fingerprinted = set(base.models.get(key, {}))
        self._versions: dict[str, int] = {}
        self._warned = False
        self.rebaseline()

    def _frozen(self) -> dict[str, torch.nn.Parameter]:
        inner: torch.nn.Module = self.__dict__["inner"]
        named = inner.named_parameters(remove_duplicate=False)
        return {n: p for n, p in named if n in self.fingerprinted and not p.requires_grad}

    def rebaseline(self) -> None:
        """Take the frozen parameters' version counters as unchanged (after a resume loaded
        the same values into them)."""
        self._versions = {n: p._version for n, p in self._frozen().items()}

    def left_out(self) -> set[str]:
        """The frozen parameters a checkpoint need not hold: fingerprinted, still frozen,
        not written in place since setup."""
        kept = {n for n, p in self._frozen().items() if self._versions.get(n) == p._version}
        moved = set(self._versions) - kept
        if moved and not self._warned:
            self._warned = True
            log.warning(
                "%d frozen parameters changed in place or were unfrozen since setup (e.g. %s): "
                "checkpoints hold them again from now on",
                len(moved),
                sorted(moved)[0],
            )
        return kept

    def state_dict(self, *args: Any, **kwargs: Any) -> dict[str, Any]:  # type: ignore[override]
        full = self.__dict__["inner"].state_dict()
        skip = self.left_out()
        return {k: v for k, v in full.items() if k not in skip}

    def load_state_dict(self, state: Any, strict: bool = True, assign: bool = False) -> Any:
        inner: torch.nn.Module = self.__dict__["inner"]
        check_complete(inner, state, self.fingerprinted)
        result = inner.load_state_dict(state, strict=False, assign=assign)
        self.rebaseline()
        return result


def check_complete(model: torch.nn.Module, saved: dict[str, Any], vouched: set[str]) -> None:
    """Refuse a checkpoint that leaves out weights the fingerprint does not vouch for (this
    model trains what the saving run had frozen, or holds nothing frozen now)."""
    missing = sorted(set(model.state_dict()) - set(saved) - vouched)
    if missing:
        raise PermanentError(
            f"the checkpoint holds no weights for {missing[0]} ({len(missing)} entries): the "
            "run that saved it had them frozen, this model trains them or has no fingerprint "
            "for them. Freeze the same parameters as the job did, or start over on a new "
            "checkpoint root"
        )


def full_state(model: torch.nn.Module, saved: dict[str, Any], vouched: set[str]) -> dict[str, Any]:
    """What HF's resume loads (its `pytorch_model.bin`): the checkpoint's entries over this
    model's own (its frozen base, whose fingerprint matched)."""
    check_complete(model, saved, vouched)
    return {**model.state_dict(), **saved}
