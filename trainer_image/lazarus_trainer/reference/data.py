"""Text the package generates itself (no downloads): sentences from a small seeded grammar."""

from __future__ import annotations

import random

import torch
from torch.utils.data import Dataset

_SUBJECTS = ["the cat", "a dog", "my friend", "the operator", "a tired pod", "the trainer"]
_VERBS = ["sees", "saves", "restores", "likes", "checkpoints", "resumes"]
_OBJECTS = ["the model", "a red ball", "every step", "the bucket", "some text", "the loss"]
_TAILS = ["today.", "again.", "at night.", "without loss.", "quickly.", "on sigterm."]


def generate_text(n_sentences: int, seed: int = 1234) -> str:
    rng = random.Random(seed)
    return " ".join(
        f"{rng.choice(_SUBJECTS)} {rng.choice(_VERBS)} {rng.choice(_OBJECTS)} {rng.choice(_TAILS)}"
        for _ in range(n_sentences)
    )


class CharDataset(Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """Fixed, non-overlapping windows of a character-level encoding."""

    def __init__(self, text: str, seq_len: int, vocab: str | None = None) -> None:
        self.vocab = vocab or "".join(sorted(set(text)))
        index = {c: i for i, c in enumerate(self.vocab)}
        ids = torch.tensor([index[c] for c in text], dtype=torch.long)
        n = (len(ids) - 1) // seq_len
        self.x = ids[: n * seq_len].view(n, seq_len)
        self.y = ids[1 : n * seq_len + 1].view(n, seq_len)

    def __len__(self) -> int:
        return self.x.shape[0]

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.x[i], self.y[i]
