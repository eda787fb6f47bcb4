"""Everything a report section reads: trial histories as the report's tables (one row per trial,
one row per trial-epoch), the configurations and their seed spread, the step budget, and the axis
the curves are drawn against.

A trial's *kept* epoch is the one its best checkpoint holds: the ``best_epoch`` the training
loop reported on its last epoch (chosen on ``TrainConfig.early_stop_metric``), else (a trial a
scheduler stopped, an old history) the epoch of the highest ``val_psnr``. The trials table gives
every quality metric at the kept epoch as ``best_<metric>`` (so ``best_val_psnr`` is the
study's own-reference PSNR of the kept model), the final-epoch values under the plain names,
and the speed figures averaged over the training epochs (epoch 0 only validates).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from ttsr import names
from ttsr.config import VAL_REF_MODES, ConfigError, TrainConfig
from tune.execution.storage import MLFLOW_RUN_KEY
from tune.reporting import groups as grouping
from tune.reporting.formatting import count, number, span, text
from tune.study.studies import Study

# PSNR/SSIM in both published conventions: the reference code's (Y, no crop), MMagic's (RGB, 4 px)
YC_AND_RGB_C4 = (names.VAL_PSNR, names.VAL_SSIM, names.VAL_PSNR_RGB_C4, names.VAL_SSIM_RGB_C4)
REF_MODE_METRICS = tuple(
    names.for_ref_mode(metric, mode)
    for mode in VAL_REF_MODES
    for metric in (*YC_AND_RGB_C4, names.VAL_LPIPS_PROXY)
)
QUALITY = (
    *YC_AND_RGB_C4,
    names.VAL_LPIPS_PROXY,
    *REF_MODE_METRICS,
    names.VAL_PSNR_MASK,
    names.VAL_PSNR_OUTSIDE,
    names.VAL_WHITE_SHARE,
    names.VAL_WHITE_SHARE_MASK,
)
# speed metric -> (trials column, how the training epochs are summarised)
SPEED_SUMMARY = {
    names.EPOCH_SECONDS: ("mean_epoch_seconds", "mean"),
    names.TRAIN_IMAGES_PER_SECOND: ("mean_train_images_per_s", "mean"),
    names.PEAK_GPU_MEMORY_GIB: ("max_peak_gpu_memory_gib", "max"),
}
EPOCH_METRICS = (*QUALITY, names.BICUBIC_PSNR, names.STEP, names.IMAGES_SEEN, *names.LOSSES)
EPOCH_METRICS += tuple(SPEED_SUMMARY)
FAST_PATHS = "fast_paths"  # ttsr.fast_paths: which fast paths a trial trusted, which fell back
VS_BICUBIC = "vs_bicubic_db"  # best_val_psnr - bicubic_psnr (> 0: the kept model beats bicubic)


kept = names.kept  # the trials column of a metric at the kept epoch: best_<metric>


def objective_column(metric: str) -> str:
    """Where a study objective sits in the trials table: quality at the kept epoch, speed
    averaged over the training epochs."""
    if metric in QUALITY:
        return kept(metric)
    return SPEED_SUMMARY.get(metric, (metric, ""))[0]


@dataclass
class TrialRecord:
    """What the report needs from one trial (built from Tune's results, or by tests)."""

    trial_id: str
    status: str  # Tune's: TERMINATED, ERROR, ...
    params: dict[str, Any]  # the trial's values of the varied keys (and its seed with repeats)
    history: list[dict[str, Any]]  # every report, in order
    best_checkpoint: str | None = None
    max_epochs: int | None = None


def frames(
    records: list[TrialRecord], *, scheduler: str = "fifo"
) -> tuple[pd.DataFrame, pd.DataFrame]:
    epoch_rows, trial_rows = [], []
    for rec in records:
        history = [h for h in rec.history if number(h.get(names.EPOCH)) is not None]
        for h in history:
            row = {"trial_id": rec.trial_id, names.EPOCH: int(h[names.EPOCH])}
            row.update({m: number(h.get(m)) for m in EPOCH_METRICS})
            epoch_rows.append(row)
        trial_rows.append(_trial_row(rec, history, scheduler))
    trials = pd.DataFrame(trial_rows)
    epochs = pd.DataFrame(epoch_rows, columns=["trial_id", names.EPOCH, *EPOCH_METRICS])
    return trials, epochs


def _trial_row(rec: TrialRecord, history: list[dict], scheduler: str) -> dict[str, Any]:
    last = history[-1] if history else {}
    best = kept_epoch(history)
    bicubics = (number(h.get(names.BICUBIC_PSNR)) for h in history)
    bicubic = next((v for v in bicubics if v is not None), None)
    row: dict[str, Any] = {
        "trial_id": rec.trial_id,
        "status": rec.status,
        "label": grouping.trial_label(rec.params) if rec.params else rec.trial_id,
        "epochs_run": max((int(h[names.EPOCH]) for h in history), default=0),
        "stop_reason": _stop_reason(rec, last, scheduler),
        names.STOP_DETAIL: text(last.get(names.STOP_DETAIL)),
        names.STOP_SIGNAL: text(last.get(names.STOP_SIGNAL)),
        names.BEST_EPOCH: int(best[names.EPOCH]) if best else None,
    }
    for m in QUALITY:
        row[kept(m)] = number(best.get(m))
    row[names.BICUBIC_PSNR] = bicubic
    psnr = row[names.BEST_VAL_PSNR]
    row[VS_BICUBIC] = psnr - bicubic if psnr is not None and bicubic is not None else None
    training = [h for h in history if int(h[names.EPOCH]) > 0]
    for metric, (column, how) in SPEED_SUMMARY.items():
        values = [v for v in (number(h.get(metric)) for h in training) if v is not None]
        summary = (max(values) if how == "max" else sum(values) / len(values)) if values else None
        row[column] = summary
    row["best_checkpoint"] = rec.best_checkpoint
    row[MLFLOW_RUN_KEY] = text(last.get(MLFLOW_RUN_KEY))
    row[FAST_PATHS] = text(last.get(FAST_PATHS))  # "on: ...; off: path (why)" or "none"
    row.update(rec.params)
    for m in EPOCH_METRICS:  # final-epoch values (what the searcher saw)
        row.setdefault(m, number(last.get(m)))
    return row


def kept_epoch(history: list[dict[str, Any]]) -> dict[str, Any]:
    """The history row of the kept epoch ({} when no epoch has a PSNR)."""
    reported = number(history[-1].get(names.BEST_EPOCH)) if history else None
    if reported is not None:
        for h in history:
            if int(h[names.EPOCH]) == int(reported):
                return h
    scored = [h for h in history if number(h.get(names.VAL_PSNR)) is not None]
    return max(scored, key=lambda h: number(h[names.VAL_PSNR]), default={})


def _stop_reason(rec: TrialRecord, last: dict[str, Any], scheduler: str) -> str | None:
    if rec.status == "ERROR":
        return "error"
    stop = text(last.get(names.STOP_REASON))
    if stop or not last:
        return stop
    if rec.max_epochs is not None and int(last[names.EPOCH]) >= rec.max_epochs:
        return names.STOP_MAX_EPOCHS
    return "asha" if scheduler == "asha" and rec.status == "TERMINATED" else "incomplete"


def pareto_mask(df: pd.DataFrame, maximize: str, minimize: str) -> pd.Series:
    """True for rows no other row beats on both objectives (ties are not domination)."""
    pts = df[[maximize, minimize]].dropna()
    hi, lo = pts[maximize].to_numpy(), pts[minimize].to_numpy()
    no_worse = (hi[None, :] >= hi[:, None]) & (lo[None, :] <= lo[:, None])  # [i, j]: j vs i
    better = (hi[None, :] > hi[:, None]) | (lo[None, :] < lo[:, None])
    front = pd.Series(~(no_worse & better).any(axis=1), index=pts.index)
    return front.reindex(df.index, fill_value=False)


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
