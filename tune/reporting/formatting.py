"""How the report, the progress lines and the estimate write numbers: missing values, durations,
counts, parameter values."""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable
from fractions import Fraction
from typing import Any


def number(v: Any) -> float | None:
    """A finite float, or None for anything else (NaN, None, text, bools)."""
    if isinstance(v, bool) or not isinstance(v, numbers.Real):  # numpy numbers are Real too
        return None
    v = float(v)
    return v if math.isfinite(v) else None


def text(v: Any) -> str | None:
    """A non-empty string, or None (pandas fills missing strings with NaN)."""
    return v if isinstance(v, str) and v else None


def fmt(v: Any, spec: str) -> str:
    n = number(v)
    return "n/a" if n is None else format(n, spec)


def db(v: Any) -> str:
    return f"{fmt(v, '.2f')} dB"


def count(v: Any) -> str:
    """An integer with thousands separators: 2,160."""
    n = number(v)
    return "n/a" if n is None else f"{round(n):,}"


def duration(v: Any, *, coarse: bool = False) -> str:
    """Seconds for a reader: a table's figures "12.3 s", "30.0 min", "4.00 h"; ``coarse`` for
    estimates and progress lines: "12 s", "30 min", "4.0 h", "2.1 days"."""
    n = number(v)
    if n is None:
        return "n/a"
    if not coarse:
        return (
            f"{n:.1f} s" if n < 120 else (f"{n / 60:.1f} min" if n < 7200 else f"{n / 3600:.2f} h")
        )
    if n < 90:
        return f"{n:.0f} s"
    if n < 90 * 60:
        return f"{n / 60:.0f} min"
    return f"{n / 3600:.1f} h" if n < 48 * 3600 else f"{n / 86400:.1f} days"


def short(v: Any) -> str:
    """A parameter value as a label writes it: floats with %g, integral floats as ints."""
    n = number(v)
    if n is not None and not isinstance(v, int):
        return f"{n:g}"
    return str(v)


def span(values: Iterable[Any]) -> str:
    """'540' when all values agree, else '540 to 1,080' (missing values are left out)."""
    found = sorted({n for n in (number(v) for v in values) if n is not None})
    if not found:
        return "n/a"
    lo, hi = count(found[0]), count(found[-1])
    return lo if lo == hi else f"{lo} to {hi}"


def param_phrase(param: str, value: Any) -> str:
    """Where a setting sits, in words: 'with 1/8 of the data', 'at 32 px', 'at lr=0.001'."""
    n = number(value)
    if param == "fraction" and n is not None:
        if n >= 1:
            return "with all of the data"
        share = Fraction(n).limit_denominator(1000)
        return f"with {share.numerator}/{share.denominator} of the data"
    if param == "size" and n is not None:
        return f"at {short(value)} px"
    return f"at {param}={short(value)}"


def mean_std(mean: Any, std: Any, n: Any, spec: str = ".2f") -> str:
    """'25.10 ± 0.12 (n=3)', or '25.10 (n=1)' when there is one value."""
    if number(mean) is None:
        return "n/a"
    k = int(number(n) or 0)
    if k >= 2 and number(std) is not None:
        return f"{format(float(mean), spec)} ± {format(float(std), spec)} (n={k})"
    return f"{format(float(mean), spec)} (n={k})"


def table_text(df) -> str:
    """A data frame as the printed summary shows it (no index, 4 significant digits)."""
    import pandas as pd

    with pd.option_context("display.width", 160, "display.max_colwidth", 48):
        return df.to_string(index=False, float_format=lambda v: f"{v:.4g}")
