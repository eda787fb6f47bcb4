"""What every report section reads: the curve axis and the step budget."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pandas as pd

from ttsr import names
from tune.reporting.data import TrialRecord, budget_facts, curve_axis, frames, steps_per_round
from tune.study.studies import load_study

SHIPPED = Path(__file__).resolve().parent.parent / "experiments.yaml"


def _study(name, **config):
    """A shipped study with its budget replaced by ``config`` (none unless given)."""
    study = load_study(SHIPPED, name, "demo")
    fixed = {k: v for k, v in study.config.items() if k not in ("budget_steps", "budget_images")}
    return replace(study, config={**fixed, **config})


def _epochs(per_trial):
    rows = [
        {"trial_id": t, names.EPOCH: e, names.STEP: s}
        for t, steps in per_trial.items()
        for e, s in enumerate(steps)
    ]
    return pd.DataFrame(rows)


def test_curves_use_steps_when_an_epoch_is_not_the_same_training():
    same = _epochs({"a": [0, 10, 20, 30], "b": [0, 10, 15]})  # b's last epoch cut short
    assert steps_per_round(same) == {"a": 10, "b": 10}
    assert curve_axis(same) == names.EPOCH
    assert curve_axis(_epochs({"a": [0, 10, 20], "b": [0, 40, 80]})) == names.STEP
    assert curve_axis(pd.DataFrame(columns=["trial_id", names.EPOCH, names.STEP])) == names.EPOCH


def _trial(trial_id, params, steps, images, stop="max_epochs"):
    history = [
        {names.EPOCH: 0, names.STEP: 0, names.IMAGES_SEEN: 0, names.VAL_PSNR: 10.0},
        {names.EPOCH: 1, names.STEP: steps, names.IMAGES_SEEN: images, names.VAL_PSNR: 11.0,
         names.STOP_REASON: stop, names.BEST_EPOCH: 1},
    ]  # fmt: skip
    return TrialRecord(trial_id, "TERMINATED", params, history)


def test_image_budget_with_different_batch_sizes():
    study = _study("resolution", budget_images=2160, epochs=1)
    records = [
        _trial("a", {"size": 32, "batch_size": 4}, 540, 2160),
        _trial("b", {"size": 64, "batch_size": 2}, 1080, 2160),
    ]
    trials, epochs = frames(records)
    budget = budget_facts(trials, epochs, study, ["size", "batch_size"])
    assert budget.budgeted
    assert budget.sentence == (
        "Budget: 2,160 training images per trial (budget_images; 540 to 1,080 optimiser steps), "
        "validated in 1 rounds; every trial made 540 to 1,080 optimiser steps (2,160 images)."
    )


def test_step_budget_names_the_trials_that_stopped_early():
    study = _study("dataset-fraction", budget_steps=540, epochs=3)
    records = [
        _trial("a", {"fraction": 1.0}, 540, 2160),
        _trial("b", {"fraction": 0.5}, 300, 1200, stop="patience"),
    ]
    trials, epochs = frames(records)
    budget = budget_facts(trials, epochs, study, ["fraction"])
    assert budget.sentence.endswith(
        "; 1 of 2 trials made it; fraction=0.5 stopped at 300 steps (patience)."
    )
    assert budget.prefix.startswith("with a budget of 540 optimiser steps per trial")


def test_no_budget_same_epochs_different_lengths():
    study = _study("inpainting")
    records = [_trial("a", {}, 10, 40), _trial("b", {}, 10, 40)]
    records[1].history.append({names.EPOCH: 2, names.STEP: 20, names.IMAGES_SEEN: 80})
    trials, epochs = frames(records)
    budget = budget_facts(trials, epochs, study, [])
    assert budget.sentence == (
        "No step budget (epochs limit the trials); an epoch is 10 optimiser steps for every "
        "trial, and they made 10 to 20 optimiser steps (40 to 80 images) in all."
    )
    assert not budget.budgeted and budget.prefix == ""
