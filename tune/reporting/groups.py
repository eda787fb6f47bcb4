"""Repeats of one configuration (every varied key of a trial except ``seed``) over seeds: mean
and spread per configuration, the seed-to-seed spread (the pooled standard deviation of the
configurations run with at least two seeds), and whether a difference between two
configurations' means is *significant*: at least two standard errors of the difference (about
a 95 % two-sided test for normal seed noise) and at least the spread itself. With one seed per
configuration the spread is unknown and the report says so instead of guessing.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from tune.reporting.formatting import fmt, number, short

SEED_KEY = "seed"
GROUP = "group"  # the trials frame's column naming each trial's configuration
ALL_TRIALS = "all trials"  # the label of the one configuration of a study that varies nothing


def config_keys(params: Sequence[str]) -> list[str]:
    """The keys that define a configuration: every varied key except the seed."""
    return [k for k in params if k != SEED_KEY]


def label(values: dict) -> str:
    """A configuration's name: its varied values (``per_w=30, tpl_w=3, adv_w=0.05``), or
    ``all trials`` for a study that varies nothing. The MLflow tag ``config`` holds the same."""
    return ", ".join(f"{k}={short(v)}" for k, v in values.items()) or ALL_TRIALS


def trial_label(params: dict) -> str:
    """A trial's name: its configuration, then its seed when seeds vary (``... · seed 1``)."""
    name = label({k: v for k, v in params.items() if k != SEED_KEY})
    return f"{name} · seed {short(params[SEED_KEY])}" if SEED_KEY in params else name


def group_trials(trials: pd.DataFrame, keys: Sequence[str], metrics: Sequence[str]) -> pd.DataFrame:
    """One row per configuration, in the order configurations first appear: ``group`` (label),
    the keys, ``n`` (trials), ``n_seeds`` (distinct seeds), and for each metric ``<m>_n``,
    ``<m>_mean`` and ``<m>_std`` (NaN with fewer than two values). Adds ``group`` to ``trials``.
    """
    keys = [k for k in keys if k in trials]
    trials[GROUP] = [label({k: row[k] for k in keys}) for _, row in trials.iterrows()]
    rows = []
    for name, members in trials.groupby(GROUP, sort=False):
        first = members.iloc[0]
        row = {GROUP: name, **{k: first[k] for k in keys}, "n": len(members)}
        row["n_seeds"] = members[SEED_KEY].nunique() if SEED_KEY in members else 1
        row["trial_ids"] = ", ".join(members["trial_id"])
        for m in metrics:
            values = [v for v in (number(x) for x in members.get(m, [])) if v is not None]
            row[f"{m}_n"] = len(values)
            row[f"{m}_mean"] = sum(values) / len(values) if values else math.nan
            row[f"{m}_std"] = pd.Series(values).std(ddof=1) if len(values) >= 2 else math.nan
        rows.append(row)
    return pd.DataFrame(rows)


def complete(frame: pd.DataFrame, *columns: str) -> pd.DataFrame:
    """The rows with a value in every one of ``columns`` (none when a column is missing)."""
    if any(c not in frame for c in columns):
        return frame.iloc[0:0]
    return frame.dropna(subset=list(columns))


def seed_spread(groups: pd.DataFrame, metric: str) -> float | None:
    """sqrt(sum((n_i - 1) s_i^2) / sum(n_i - 1)) over the configurations with two or more
    seeds; None when there is none."""
    num = den = 0.0
    for _, g in groups.iterrows():
        n, std = int(g.get(f"{metric}_n", 0) or 0), number(g.get(f"{metric}_std"))
        if g.get("n_seeds", 1) >= 2 and n >= 2 and std is not None:
            num += (n - 1) * std**2
            den += n - 1
    return math.sqrt(num / den) if den else None


@dataclass(frozen=True)
class Difference:
    """``delta`` = one configuration's mean minus another's, judged against the spread."""

    delta: float
    spread: float | None
    n_a: int = 1
    n_b: int = 1

    @property
    def margin(self) -> float | None:
        """Two standard errors of a difference of means, 2 * spread * sqrt(1/n_a + 1/n_b), and
        never less than the spread itself (many seeds do not make a sub-spread gap count)."""
        if self.spread is None:
            return None
        se = self.spread * math.sqrt(1.0 / max(self.n_a, 1) + 1.0 / max(self.n_b, 1))
        return max(2.0 * se, self.spread)

    @property
    def significant(self) -> bool | None:
        return None if self.margin is None else abs(self.delta) >= self.margin

    def verdict(self, unit: str = " dB") -> str:
        if self.spread is None:
            return "of unknown significance (single seed: spread unknown)"
        margin = f"{fmt(self.margin, '.2f')}{unit}"
        spread = f"seed spread {fmt(self.spread, '.2f')}{unit}"
        if self.significant:
            return f"beyond two standard errors ({margin}; {spread})"
        return f"not significant (within two standard errors, {margin}; {spread})"


def difference(a: pd.Series, b: pd.Series, metric: str, spread: float | None) -> Difference:
    a_n, b_n = (int(number(r.get(f"{metric}_n")) or 1) for r in (a, b))
    return Difference(float(a[f"{metric}_mean"]) - float(b[f"{metric}_mean"]), spread, a_n, b_n)


def best_index(values: pd.Series, mode: str):
    """The index label of the best of ``values`` (NaN skipped) for ``mode`` ("max"/"min")."""
    return values.idxmax() if mode == "max" else values.idxmin()


def mark_against_best(
    groups: pd.DataFrame, metric: str, *, mode: str, spread: float | None
) -> pd.DataFrame:
    """Adds ``<m>_vs_best`` (this configuration minus the best one) and ``significance``:
    "best", "significant", "not significant", or "spread unknown" (single seed)."""
    col = f"{metric}_mean"
    out = groups.copy()
    if out.empty or col not in out or out[col].isna().all():
        out[f"{metric}_vs_best"], out["significance"] = math.nan, None
        return out
    best = out.loc[best_index(out[col], mode)]
    marks, deltas = [], []
    for i, row in out.iterrows():
        d = difference(row, best, metric, spread)  # NaN when the configuration has no mean
        deltas.append(d.delta)
        if number(row[col]) is None:
            marks.append(None)
        elif i == best.name:
            marks.append("best")
        elif d.significant is None:
            marks.append("spread unknown")
        else:
            marks.append("significant" if d.significant else "not significant")
    out[f"{metric}_vs_best"], out["significance"] = deltas, marks
    return out
