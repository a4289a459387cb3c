"""Accelerate's prepared loader over a map-style dataset that takes no instance attributes
(`__slots__`), with a collate_fn masking from the global RNG; run as a subprocess by tests.
argv: steps. Env ACCEL_TEST_PLAIN=1: the same rows as a TensorDataset (hookable)."""

from __future__ import annotations

import os
import sys
from typing import Any

import torch
from accelerate import Accelerator, DataLoaderConfiguration
from accelerate.utils import set_seed
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lazarus_trainer import leave
from lazarus_trainer.adapters.accelerate import from_accelerator

Row = tuple[torch.Tensor, torch.Tensor]


class SlotsDataset:
    """A map-style dataset without a `__dict__`."""

    __slots__ = ("rows",)

    def __init__(self, rows: TensorDataset) -> None:
        self.rows = rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> Row:
        x, y = self.rows[i]
        return x, y


def mask_collate(rows: list[Row]) -> tuple[torch.Tensor, ...]:
    x = torch.stack([r[0] for r in rows])
    return x.masked_fill(torch.rand(x.shape) < 0.15, 0.0), torch.stack([r[1] for r in rows])


def main() -> None:
    steps = int(sys.argv[1])
    set_seed(0)
    config = DataLoaderConfiguration(use_seedable_sampler=True)
    accelerator = Accelerator(cpu=True, dataloader_config=config)
    data = TensorDataset(torch.randn(16, 4), torch.randn(16, 1))
    dataset: Any = data if os.environ.get("ACCEL_TEST_PLAIN") == "1" else SlotsDataset(data)
    loader = DataLoader(dataset, batch_size=4, shuffle=True, collate_fn=mask_collate)
    model = nn.Linear(4, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
    lz = from_accelerator(accelerator, model=model, optimizer=optimizer, dataloader=loader)
    lz.resume()
    for x, y in loader:
        accelerator.backward(nn.functional.mse_loss(model(x), y))
        optimizer.step()
        optimizer.zero_grad()
        lz.step(samples=x.shape[0])
        if lz.should_stop or lz.step_count >= steps:
            break
    leave(lz.close())


if __name__ == "__main__":
    main()
