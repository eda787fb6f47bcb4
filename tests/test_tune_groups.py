"""Configurations over seeds: mean/std/n, the pooled seed spread and the significance rule."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from tune.reporting.groups import (
    ALL_TRIALS,
    Difference,
    config_keys,
    group_trials,
    mark_against_best,
    seed_spread,
)


def _trials(rows):
    return pd.DataFrame(
        [{"trial_id": f"t{i}", "lr": lr, "seed": s, "psnr": p} for i, (lr, s, p) in enumerate(rows)]
    )


def test_groups_have_mean_std_n_and_ignore_the_seed():
    trials = _trials([(1e-4, 0, 25.0), (1e-4, 1, 25.2), (1e-3, 0, 24.0), (1e-3, 1, None)])
    assert config_keys(["lr", "seed"]) == ["lr"]
    groups = group_trials(trials, ["lr"], ["psnr"]).set_index("group")
    assert list(trials["group"]) == ["lr=0.0001", "lr=0.0001", "lr=0.001", "lr=0.001"]
    a, b = groups.loc["lr=0.0001"], groups.loc["lr=0.001"]
    assert (a["n"], a["n_seeds"], a["psnr_n"]) == (2, 2, 2)
    assert a["psnr_mean"] == pytest.approx(25.1) and a["psnr_std"] == pytest.approx(0.1414, 1e-3)
    assert (b["psnr_n"], b["psnr_mean"]) == (1, 24.0) and math.isnan(b["psnr_std"])
    assert a["trial_ids"] == "t0, t1"


def test_a_study_that_varies_nothing_is_one_configuration():
    trials = _trials([(1e-4, 0, 25.0), (1e-4, 1, 25.2)])
    groups = group_trials(trials, [], ["psnr"])
    assert list(groups["group"]) == [ALL_TRIALS] and groups["n"].item() == 2


def test_pooled_spread_weights_by_degrees_of_freedom():
    trials = _trials(
        [(1, 0, 10.0), (1, 1, 12.0), (1, 2, 14.0), (2, 0, 20.0), (2, 1, 21.0), (3, 0, 5.0)]
    )
    groups = group_trials(trials, ["lr"], ["psnr"])
    # variances 4 (n=3) and 0.5 (n=2); the single-seed configuration does not count
    assert seed_spread(groups, "psnr") == pytest.approx(math.sqrt((2 * 4 + 1 * 0.5) / 3))


def test_no_spread_without_two_seeds():
    # two trials of one configuration with the same seed (a duplicate sample) are not a spread
    trials = _trials([(1, 0, 10.0), (1, 0, 11.0), (2, 0, 20.0)])
    assert seed_spread(group_trials(trials, ["lr"], ["psnr"]), "psnr") is None


def test_difference_below_the_spread_is_not_significant():
    assert Difference(0.05, 0.14).significant is False
    assert "not significant" in Difference(-0.05, 0.14).verdict()
    assert Difference(0.5, 0.14).significant is True
    assert Difference(-0.5, 0.14).verdict() == (
        "beyond two standard errors (0.40 dB; seed spread 0.14 dB)"
    )
    # two standard errors of a difference of means: 2 * spread * sqrt(1/n_a + 1/n_b)
    assert Difference(0.25, 0.1, 2, 2).margin == pytest.approx(0.2)
    assert Difference(0.25, 0.1, 2, 2).significant is True
    assert Difference(0.15, 0.1, 2, 2).significant is False  # 1.5 spreads: within the margin
    assert Difference(0.15, 0.1, 8, 8).significant is True  # more seeds, smaller standard error
    assert Difference(0.09, 0.1, 50, 50).significant is False  # never below the spread itself
    assert Difference(0.5, None).significant is None
    assert "single seed: spread unknown" in Difference(0.5, None).verdict()


def test_mark_against_best():
    trials = _trials(
        [(1, 0, 25.0), (1, 1, 25.2), (2, 0, 25.05), (2, 1, 25.25), (3, 0, 24.0), (3, 1, 24.2)]
    )
    groups = group_trials(trials, ["lr"], ["psnr"])
    spread = seed_spread(groups, "psnr")
    marked = mark_against_best(groups, "psnr", mode="max", spread=spread).set_index("group")
    assert marked["significance"].to_dict() == {
        "lr=1": "not significant",  # 0.05 below the best, spread 0.14
        "lr=2": "best",
        "lr=3": "significant",
    }
    assert marked.loc["lr=3", "psnr_vs_best"] == pytest.approx(-1.05)
    unknown = mark_against_best(groups, "psnr", mode="max", spread=None)
    assert set(unknown["significance"]) == {"best", "spread unknown"}
    lowest = mark_against_best(groups, "psnr", mode="min", spread=spread).set_index("group")
    assert lowest.loc["lr=3", "significance"] == "best"
