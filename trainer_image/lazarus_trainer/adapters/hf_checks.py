"""What the HF adapter's resume lays out for HF's Trainer, checked before the checkpoint is
chosen: HF reads `trainer_state.json` and the state files itself, and a value of the wrong
shape there is a crash inside HF, past the fall-back to an older checkpoint. Here it is an
`InvalidCheckpoint` with one line saying why, and the checkpoint is quarantined.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

from transformers import TrainerState

from lazarus_contract.bounded_json import MalformedJSON, loads_bounded, one_line

from ..storage import InvalidCheckpoint

MAX_TRAINER_STATE_BYTES = 64 << 20  # log_history of a long run, with room
TRAINER_STATE_DEPTH = 16  # HF's TrainerState nests 4 deep


def _fits(value: Any, annotation: str) -> bool:
    """`value` as HF's TrainerState field annotated `annotation` ("<class 'int'>", "float |
    None", "list[...] | None") can use it; a bool is no number."""
    if value is None:
        return "None" in annotation
    base = re.split(r"[ \[|]", annotation.removeprefix("<class '").removesuffix("'>"))[0]
    if base in ("list", "dict"):  # stateful_callbacks is saved as a dict
        return isinstance(value, list | dict)
    kind = {"bool": bool, "int": int, "float": int | float, "str": str}.get(base)
    return kind is None or (isinstance(value, kind) and (base == "bool") == (type(value) is bool))


def check_trainer_state(text: Any, what: str) -> dict[str, Any]:
    """HF's TrainerState JSON as saved: an object of its fields, each of its type."""
    if not isinstance(text, str):
        raise InvalidCheckpoint(f"{what}: hf_trainer_state holds no JSON text")
    try:
        # NaN/Infinity are HF's own: its log_history records an fp16 step's overflow as
        # grad_norm Infinity (and a diverged loss as NaN), and HF reads them back.
        doc = loads_bounded(
            text,
            max_bytes=MAX_TRAINER_STATE_BYTES,
            max_depth=TRAINER_STATE_DEPTH,
            allow_nan=True,
        )
    except MalformedJSON as exc:
        raise InvalidCheckpoint(f"{what}: hf_trainer_state is not usable JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise InvalidCheckpoint(f"{what}: hf_trainer_state is not a JSON object")
    fields = {f.name: str(f.type) for f in dataclasses.fields(TrainerState)}
    for key, value in doc.items():
        if key not in fields or not _fits(value, fields[key]):
            shown = one_line(repr(key), 40)
            raise InvalidCheckpoint(f"{what}: hf_trainer_state {shown} is not HF's TrainerState")
    history = doc.get("log_history")
    if history is not None and not all(isinstance(r, dict) for r in history):
        raise InvalidCheckpoint(f"{what}: hf_trainer_state log_history is not a list of dicts")
    return doc


def check_hf_state(common: dict[str, Any], what: str) -> None:
    """Every object the HF resume writes for HF is there, of the shape HF reads."""
    for kind, name in (
        ("models", "model"),
        ("optimizers", "optimizer"),
        ("schedulers", "scheduler"),
    ):
        if not isinstance(common[kind].get(name), dict):
            raise InvalidCheckpoint(f"{what}: no {kind[:-1]} state {name!r} for HF's Trainer")
    holder = common["extras"].get("hf_trainer_state")
    check_trainer_state(holder.get("json") if isinstance(holder, dict) else None, what)
