"""Repeating each configuration over seeds, so a report can tell a difference from noise.

Grid and fixed-config studies get a ``seed`` grid dimension (seed, seed + 1, ...). Searched
studies wrap the searcher in `SeedRepeater`: every configuration Optuna suggests runs
``repeats`` times, trial i of a group with seed = the study's seed + i (the trainable reads
Tune's ``__trial_index__``), and Optuna is told the mean of each objective once the whole group
has finished. (Ray's own `Repeater` averages a single metric only; multi-objective studies
need each objective averaged.)
"""

from __future__ import annotations

import math
from typing import Any

from ray.tune.search import Repeater, Searcher
from ray.tune.search.repeater import TRIAL_INDEX

__all__ = ["TRIAL_INDEX", "SeedRepeater", "seed_for"]


def seed_for(base_seed: int, config: dict[str, Any]) -> int:
    """The TrainConfig seed of a trial: the study's, offset by its index in its repeat group."""
    return base_seed + int(config.get(TRIAL_INDEX, 0))


class SeedRepeater(Repeater):
    """`Repeater` that averages every objective (one or two) over a group's trials."""

    def __init__(self, searcher: Searcher, *, repeat: int, metrics: list[str]) -> None:
        super().__init__(searcher, repeat=repeat, set_index=True)
        self.metrics = list(metrics)

    def on_trial_complete(
        self, trial_id: str, result: dict[str, Any] | None = None, **kwargs: Any
    ) -> None:
        group = self._trial_id_to_group.get(trial_id)
        if group is None:  # not one of ours (cannot happen with Tune's own bookkeeping)
            return
        result = result or {}
        group.report(trial_id, {m: _number(result.get(m)) for m in self.metrics})
        if group.finished_reporting():
            scores = group.scores()
            mean = {m: _mean([s[m] for s in scores]) for m in self.metrics}
            self.searcher.on_trial_complete(group.primary_trial_id, result=mean, **kwargs)


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return math.nan
    return float(value)


def _mean(values: list[float]) -> float:
    finite = [v for v in values if math.isfinite(v)]
    return sum(finite) / len(finite) if finite else math.nan
