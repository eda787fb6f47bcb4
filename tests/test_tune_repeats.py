"""Repeats over seeds: the seed grid of grid studies, SeedRepeater for searched ones, and the
trial's seed (no Ray cluster started)."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

from ray import tune
from ray.tune.search import Searcher
from ray.tune.search.repeater import TRIAL_INDEX

from tune.execution.trainable import trial_values
from tune.execution.tuner import SeedRepeater, build_tuner, param_space, searcher
from tune.study.studies import load_study

SHIPPED = Path(__file__).resolve().parent.parent / "experiments.yaml"


class Scripted(Searcher):
    """Suggests configs 0, 1, 2, ... and records what it is told."""

    def __init__(self):
        super().__init__(metric=["val_psnr", "val_perceptual"], mode=["max", "min"])
        self.n, self.completed = 0, {}

    def suggest(self, trial_id):
        self.n += 1
        return {"per_w": float(self.n)}

    def on_trial_complete(self, trial_id, result=None, **kwargs):
        self.completed[trial_id] = result


def test_each_suggestion_runs_once_per_seed_and_optuna_sees_the_means():
    inner = Scripted()
    rep = SeedRepeater(inner, repeat=2, metrics=["val_psnr", "val_perceptual"])
    a, b, c = rep.suggest("a"), rep.suggest("b"), rep.suggest("c")
    assert a["per_w"] == b["per_w"] == 1.0 and c["per_w"] == 2.0
    assert (a[TRIAL_INDEX], b[TRIAL_INDEX], c[TRIAL_INDEX]) == (0, 1, 0)
    rep.on_trial_complete("a", {"val_psnr": 26.0, "val_perceptual": 0.10})
    assert inner.completed == {}  # the group is not complete yet
    rep.on_trial_complete("b", {"val_psnr": 27.0, "val_perceptual": 0.20})
    assert inner.completed == {"a": {"val_psnr": 26.5, "val_perceptual": 0.15000000000000002}}
    # A failed repeat (no result) does not poison the mean of the others.
    d = rep.suggest("d")
    assert d[TRIAL_INDEX] == 1
    rep.on_trial_complete("c", None)
    rep.on_trial_complete("d", {"val_psnr": 25.0, "val_perceptual": 0.3})
    assert inner.completed["c"] == {"val_psnr": 25.0, "val_perceptual": 0.3}


def test_all_failed_group_reports_nan():
    inner = Scripted()
    rep = SeedRepeater(inner, repeat=2, metrics=["val_psnr", "val_perceptual"])
    rep.suggest("a"), rep.suggest("b")
    rep.on_trial_complete("a", {})
    rep.on_trial_complete("b", {"val_psnr": "n/a"})
    assert all(math.isnan(v) for v in inner.completed["a"].values())


def test_repeated_trial_gets_its_seed():
    base = {"seed": 7, "size": 32}
    assert trial_values(base, {"per_w": 1.0, TRIAL_INDEX: 0})["seed"] == 7
    values = trial_values(base, {"per_w": 1.0, TRIAL_INDEX: 1})
    assert values["seed"] == 8 and TRIAL_INDEX not in values


def test_grid_studies_repeat_over_a_seed_dimension():
    study = replace(load_study(SHIPPED, "dataset-fraction", "demo"), repeats=3)
    space = param_space(study)
    assert space["seed"] == tune.grid_search([0, 1, 2])
    assert study.num_trials() == 12
    shipped = load_study(SHIPPED, "dataset-fraction", "demo")
    assert shipped.repeats == 2 and param_space(shipped)["seed"] == tune.grid_search([0, 1])
    assert "seed" not in param_space(replace(shipped, repeats=1))


def test_searched_study_repeats_in_the_searcher_with_baseline_first(tmp_path):
    study = load_study(SHIPPED, "loss-weights", "demo")
    assert study.repeats == 3 and study.num_trials() == 6
    alg = searcher(study, seed=0)
    assert isinstance(alg.searcher, SeedRepeater) and alg.searcher.repeat == 3
    assert "seed" not in param_space(study)  # the repeater sets the seed, not a grid
    tuner = build_tuner(study, meta={"study": "x"}, storage=str(tmp_path), name="n")
    assert tuner._local_tuner._tune_config.num_samples == 6  # 2 suggestions x 3 seeds
    # Optuna's first suggestion is the reconstruction-only baseline (start_points), then the
    # demo's fixed perceptual weighting
    first, second = alg.searcher.searcher._points_to_evaluate
    assert first == {"per_w": 0.0, "tpl_w": 0.0, "adv_w": 0.0}
    assert second == {"per_w": 1000.0, "tpl_w": 0.0, "adv_w": 0.0}
