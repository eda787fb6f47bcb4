"""Everything a report section reads: the tables, the configurations and their seed spread,
the step budget, and the axis the curves are drawn against."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ttsr import names
from ttsr.config import ConfigError, TrainConfig
from tune.reporting import groups as grouping
from tune.reporting.formatting import count, number, span
from tune.reporting.trial_frames import (
    REF_MODE_METRICS,
    SPEED_SUMMARY,
    VS_BICUBIC,
    kept,
    objective_column,
    pareto_mask,
)
from tune.study.studies import Study


@dataclass(frozen=True)
class Budget:
    """The trials' training length: what the config fixed and what the trials made."""

    sentence: str  # for the summary ("" when there is nothing to say)
    prefix: str  # for answers: "at 540 optimiser steps each" ("" when unknown)
    budgeted: bool  # the config fixes a step or image budget


@dataclass
class ReportData:
    study: Study
    trials: pd.DataFrame  # one row per trial, with `group` (and `pareto` for two objectives)
    epochs: pd.DataFrame  # one row per trial-epoch
    groups: pd.DataFrame  # one row per configuration (see tune.reporting.groups.group_trials)
    keys: list[str]  # the keys that define a configuration (varied keys but the seed)
    spread: dict[str, float | None]  # trials column -> seed-to-seed spread (None: unknown)
    budget: Budget
    x: str  # names.EPOCH or names.STEP: what the curves are drawn against
    out_dir: Path
    title: str

    @property
    def objective_columns(self) -> list[str]:
        return [objective_column(o.metric) for o in self.study.objectives]

    def split_objectives(self) -> tuple[str, str]:
        """(the maximised, the minimised) objective's trials column (two-objective studies)."""
        a, b = self.study.objectives
        hi, lo = (a, b) if a.mode == "max" else (b, a)
        return objective_column(hi.metric), objective_column(lo.metric)

    def best_group(self) -> pd.Series | None:
        """The configuration with the best mean of the main objective over its seeds, on the
        Pareto front of the configuration means when the study has two objectives."""
        col = f"{objective_column(self.study.metric)}_mean"
        g = grouping.complete(self.groups, col)
        if self.study.multi_objective and "pareto" in g:
            g = g[g["pareto"].fillna(False).astype(bool)]
        if g.empty:
            return None
        return g.loc[g[col].idxmax() if self.study.mode == "max" else g[col].idxmin()]


def make_data(
    trials: pd.DataFrame,
    epochs: pd.DataFrame,
    study: Study,
    *,
    param_keys: Sequence[str],
    out_dir: Path,
) -> ReportData:
    """Group the trials into configurations, measure the seed spread, mark the Pareto front
    (two objectives) and the significance of each configuration against the best one."""
    columns = [
        names.BEST_VAL_PSNR,
        names.BICUBIC_PSNR,
        VS_BICUBIC,
        kept(names.VAL_SSIM),
        kept(names.VAL_PSNR_RGB_C4),
        kept(names.VAL_SSIM_RGB_C4),
        kept(names.VAL_LPIPS_PROXY),
        *(objective_column(o.metric) for o in study.objectives),
        *(column for column, _ in SPEED_SUMMARY.values()),
        *(kept(m) for m in REF_MODE_METRICS if m.startswith(names.VAL_PSNR)),
    ]
    columns = [c for c in dict.fromkeys(columns) if c in trials]
    keys = grouping.config_keys(param_keys)
    if trials.empty:
        groups = pd.DataFrame(columns=[grouping.GROUP, "n", "n_seeds"])
    else:
        groups = grouping.group_trials(trials, keys, columns)
    spread = {c: grouping.seed_spread(groups, c) for c in columns}
    main = objective_column(study.metric)
    if main in columns:
        groups = grouping.mark_against_best(groups, main, mode=study.mode, spread=spread[main])
    data = ReportData(
        study=study,
        trials=trials,
        epochs=epochs,
        groups=groups,
        keys=[k for k in keys if k in trials],
        spread=spread,
        budget=budget_facts(trials, epochs, study, [k for k in param_keys if k in trials]),
        x=curve_axis(epochs),
        out_dir=out_dir,
        title=f"{study.name} ({study.profile} profile)",
    )
    if study.multi_objective and not trials.empty:
        hi, lo = data.split_objectives()
        if {hi, lo} <= set(trials):
            trials["pareto"] = pareto_mask(trials, hi, lo)
            groups["pareto"] = pareto_mask(groups, f"{hi}_mean", f"{lo}_mean")
    return data


def steps_per_round(epochs: pd.DataFrame) -> dict[str, int]:
    """trial id -> optimiser steps between two validations (the largest gap, so a last epoch
    cut short by a divergence check does not count)."""
    if epochs.empty or names.STEP not in epochs or epochs[names.STEP].isna().all():
        return {}
    out = {}
    for trial_id, rows in epochs.groupby("trial_id"):
        steps = rows.sort_values(names.EPOCH)[names.STEP].dropna().diff().dropna()
        if len(steps):
            out[trial_id] = round(steps.max())
    return out


def curve_axis(epochs: pd.DataFrame) -> str:
    """Epochs, unless the trials make different numbers of steps per epoch (e.g. different
    data fractions without a budget): then an epoch is not the same training for each, and
    curves are drawn against optimiser steps."""
    return names.STEP if len(set(steps_per_round(epochs).values())) > 1 else names.EPOCH


def budget_facts(
    trials: pd.DataFrame, epochs: pd.DataFrame, study: Study, keys: Sequence[str]
) -> Budget:
    """What the config fixed (budget_steps / budget_images) and what the trials made."""
    if trials.empty:
        return Budget("", "", False)
    configs = [_trial_config(study, row, keys) for _, row in trials.iterrows()]
    declared = [c.step_budget if c is not None else None for c in configs]
    steps = list(trials[names.STEP]) if names.STEP in trials else [None] * len(trials)
    images = list(trials[names.IMAGES_SEEN]) if names.IMAGES_SEEN in trials else steps
    made = f"{span(steps)} optimiser steps ({span(images)} images)"
    same = len({number(s) for s in steps}) == 1 and number(steps[0]) is not None
    prefix = f"at {count(steps[0])} optimiser steps each" if same else ""
    if any(d is not None for d in declared):
        what = _declared_text(configs, declared)
        short = [
            f"{row['label']} stopped at {count(s)} steps ({row['stop_reason']})"
            for (_, row), s, d in zip(trials.iterrows(), steps, declared, strict=True)
            if d is not None and number(s) is not None and number(s) < d
        ]
        if not short:
            return Budget(f"Budget: {what}; every trial made {made}.", prefix, True)
        full = f"{len(trials) - len(short)} of {len(trials)} trials made it"
        sentence = f"Budget: {what}; {full}; " + "; ".join(short) + "."
        return Budget(sentence, prefix or f"with a budget of {what}", True)
    if all(number(s) is None for s in steps):
        return Budget("", "", False)
    head = "No step budget (epochs limit the trials)"
    if same:
        return Budget(f"{head}; every trial made {made}.", prefix, False)
    per_round = set(steps_per_round(epochs).values())
    if len(per_round) <= 1:
        each = f"{span(per_round)} optimiser steps" if per_round else "the same training"
        sentence = f"{head}; an epoch is {each} for every trial, and they made {made} in all."
        return Budget(sentence, "", False)
    why = "so they differ in training length as well as in the varied setting"
    sentence = (
        f"{head}: an epoch is {span(per_round)} optimiser steps depending on the trial and the "
        f"trials made {made}, {why}; curves are drawn against optimiser steps."
    )
    return Budget(sentence, f"with {span(steps)} optimiser steps (no budget)", False)


def _declared_text(configs: list[TrainConfig | None], declared: list[int | None]) -> str:
    found = [c for c in configs if c is not None]
    rounds = span(c.epochs for c in found)
    if any(c.budget_images is not None for c in found):
        images = span(c.budget_images for c in found)
        return (
            f"{images} training images per trial (budget_images; {span(declared)} optimiser "
            f"steps), validated in {rounds} rounds"
        )
    steps = span(declared)
    return f"{steps} optimiser steps per trial (budget_steps), validated in {rounds} rounds"


def _trial_config(study: Study, row: pd.Series, keys: Sequence[str]) -> TrainConfig | None:
    """The trial's TrainConfig: the study's fixed config with the trial's varied values."""
    values = dict(study.config)
    for key in keys:
        value = row.get(key)
        if value is None or (isinstance(value, float) and value != value):  # missing: NaN
            continue
        values[key] = value.item() if hasattr(value, "item") else value  # numpy -> Python
    try:
        return TrainConfig.from_dict(values)
    except ConfigError:
        return None
