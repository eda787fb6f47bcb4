"""How the report writes numbers."""

from __future__ import annotations

import numpy as np

from tune.reporting.formatting import count, duration, mean_std, number, param_phrase, short, span


def test_number_accepts_numpy_and_rejects_missing_values():
    assert number(np.int64(3)) == 3.0 and number(np.float32(0.5)) == 0.5
    assert number(float("nan")) is None and number(None) is None
    assert number(True) is None and number(np.bool_(True)) is None and number("3") is None


def test_words_for_values():
    assert count(2160) == "2,160" and count(None) == "n/a"
    assert (
        duration(1.04) == "1.0 s" and duration(1800) == "30.0 min" and duration(14400) == "4.00 h"
    )
    assert short(0.001) == "0.001" and short(8.0) == "8" and short(np.int64(8)) == "8"
    assert span([540, 540.0]) == "540" and span([90, None, 720]) == "90 to 720"
    assert param_phrase("fraction", 0.125) == "with 1/8 of the data"
    assert param_phrase("fraction", 1.0) == "with all of the data"
    assert param_phrase("size", 32) == "at 32 px" and param_phrase("lr", 1e-4) == "at lr=0.0001"
    assert mean_std(25.1, 0.1414, 2) == "25.10 ± 0.14 (n=2)"
    assert mean_std(25.1, float("nan"), 1) == "25.10 (n=1)"


def test_coarse_durations_for_estimates_and_progress_lines():
    assert [duration(s, coarse=True) for s in (12.4, 1800, 4 * 3600, 3 * 86400)] == [
        "12 s",
        "30 min",
        "4.0 h",
        "3.0 days",
    ]
    assert duration(None, coarse=True) == "n/a"
