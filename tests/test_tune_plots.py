"""Plot details the report tests cannot see in a PNG: the bicubic baseline lines."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd

from ttsr import names
from tune.reporting.plots import bicubic_baseline


def _lines(trials, colours=None):
    fig, ax = plt.subplots()
    bicubic_baseline(ax, trials, colours)
    out = [(ln.get_label(), ln.get_linestyle(), ln.get_color()) for ln in ax.get_lines()]
    plt.close(fig)
    return out


def test_one_labelled_dashed_line_when_every_trial_shares_the_images():
    trials = pd.DataFrame({"trial_id": ["a", "b"], names.BICUBIC_PSNR: [22.5, 22.5]})
    assert _lines(trials) == [("bicubic 22.50 dB", "--", "gray")]


def test_one_line_per_trial_in_its_colour_when_the_images_differ():
    trials = pd.DataFrame({"trial_id": ["a", "b"], names.BICUBIC_PSNR: [22.5, 24.0]})
    lines = _lines(trials, {"a": "tab:blue", "b": "tab:red"})
    assert [(s, c) for _, s, c in lines] == [("--", "tab:blue"), ("--", "tab:red")]
    assert lines[0][0] == "bicubic (dashed, per trial)" and lines[1][0].startswith("_")


def test_no_line_without_bicubic():
    assert _lines(pd.DataFrame({"trial_id": ["a"], names.BICUBIC_PSNR: [None]})) == []
