"""Which images each optimiser step sees: a function of (seed, step), so resume is exact.

Step ``s`` takes batch ``s % steps_per_pass`` of data pass ``s // steps_per_pass + 1``, whose
order is `torch.randperm` with a generator seeded ``seed * 1000 + pass`` (docs/TRAINING.md).
The last incomplete batch of a pass is dropped, unless the whole set is smaller than one batch.
Items are fetched as ``(pass, index)``, so the dataset's own random draws need no ``set_epoch``
state in the DataLoader workers (persistent workers are safe).

Validation rounds ("epochs" in the metrics): without a budget, round r ends after data pass r;
with a budget of B steps in R rounds, at step ``r * B // R`` (a pass can span two rounds).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch.utils.data import Dataset, Sampler


@dataclass(frozen=True)
class StepSchedule:
    """How many steps a run makes and where its validation rounds end."""

    items: int  # training items
    batch_size: int
    rounds: int  # validation rounds after epoch 0 (config.epochs)
    total_steps: int | None  # the budget (config.step_budget); None = rounds full passes

    @property
    def steps_per_pass(self) -> int:
        """Optimiser steps in one pass (the last incomplete batch dropped)."""
        return self.items // self.batch_size if self.items > self.batch_size else 1

    def round_end(self, epoch: int) -> int:
        """The global step count at the end of round ``epoch`` (0 = before training)."""
        if self.total_steps is None:
            return epoch * self.steps_per_pass
        return epoch * self.total_steps // self.rounds


class StepSampler(Sampler[list[tuple[int, int]]]):
    """Batches of ``(pass, index)`` for the global steps ``[start, stop)``.

    One sampler (and one DataLoader, whose workers then persist) serves a whole run:
    `set_range` moves it to the next round's steps before the loader is iterated again (the
    DataLoader reads its batch sampler in the main process, at the start of each iteration).
    """

    def __init__(self, schedule: StepSchedule, *, seed: int) -> None:
        self.schedule, self.seed = schedule, seed
        self.start = self.stop = 0
        self._order: tuple[int, list[int]] | None = None

    def set_range(self, start: int, stop: int) -> None:
        """Yield the batches of global steps ``[start, stop)`` from the next iteration on."""
        if not 0 <= start <= stop:
            raise ValueError(f"steps [{start}, {stop}) are not a range")
        self.start, self.stop = start, stop

    def __len__(self) -> int:
        return self.stop - self.start

    def _pass_order(self, data_pass: int) -> list[int]:
        if self._order is None or self._order[0] != data_pass:
            g = torch.Generator().manual_seed(self.seed * 1000 + data_pass)
            self._order = (data_pass, torch.randperm(self.schedule.items, generator=g).tolist())
        return self._order[1]

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        per_pass, size = (
            self.schedule.steps_per_pass,
            min(self.schedule.items, self.schedule.batch_size),
        )
        for step in range(self.start, self.stop):
            data_pass, position = step // per_pass + 1, step % per_pass
            order = self._pass_order(data_pass)
            yield [(data_pass, i) for i in order[position * size : (position + 1) * size]]


class PassItems(Dataset):
    """``dataset[(pass, index)]`` -> ``dataset.item(index, pass)``."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]) -> dict:
        data_pass, index = key
        return self.dataset.item(index, data_pass)
