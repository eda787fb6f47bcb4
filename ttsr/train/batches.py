"""Which images each optimiser step sees: a function of (seed, step), so resume is exact.

A run is a sequence of global steps. Step ``s`` belongs to data pass ``e = s // steps_per_pass
+ 1`` and takes batch ``s % steps_per_pass`` of that pass's order, a permutation drawn from a
generator seeded with ``seed * 1000 + e`` (what `torch.utils.data.RandomSampler` draws with that
generator). The last incomplete batch of a pass is dropped, unless the whole set is smaller than
one batch. The dataset's own random draws (augmentation, inpainting boxes) depend on
(seed, pass, index): every item is fetched as ``(pass, index)``, so no ``set_epoch`` state has to
reach the DataLoader workers (persistent workers are safe).

Validation rounds ("epochs" in the metrics): without a budget, round r ends after data pass r.
With a budget of B steps split into R rounds, round r ends at step ``r * B // R``; a data pass
can then span two rounds, and every trial of a grid makes exactly B steps.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch.utils.data import Dataset, Sampler

from ttsr.config import TrainConfig


def steps_per_pass(items: int, batch_size: int) -> int:
    """Optimiser steps in one pass over ``items`` (last incomplete batch dropped)."""
    return items // batch_size if items > batch_size else 1


@dataclass(frozen=True)
class StepSchedule:
    """How many steps a run makes and where its validation rounds end."""

    items: int  # training items
    batch_size: int
    rounds: int  # validation rounds after epoch 0 (config.epochs)
    total_steps: int | None  # the budget; None = rounds full passes

    @classmethod
    def from_config(cls, config: TrainConfig, items: int) -> StepSchedule:
        return cls(
            items=items,
            batch_size=config.batch_size,
            rounds=config.epochs,
            total_steps=config.step_budget,
        )

    @property
    def steps_per_pass(self) -> int:
        return steps_per_pass(self.items, self.batch_size)

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

    def __init__(self, schedule: StepSchedule, *, seed: int, start: int, stop: int) -> None:
        self.schedule, self.seed = schedule, seed
        self.start, self.stop = start, stop
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
