"""Trial histories as the report's two tables: one row per trial, one row per trial-epoch.

A trial's *kept* epoch is the one its best checkpoint holds: the ``best_epoch`` the training
loop reported on its last epoch (chosen on ``TrainConfig.early_stop_metric``), else (a trial a
scheduler stopped, an old history) the epoch of the highest ``val_psnr``. The trials table gives
every quality metric at the kept epoch as ``best_<metric>`` (so ``best_val_psnr`` is the
study's own-reference PSNR of the kept model), the final-epoch values under the plain names,
and the speed figures averaged over the training epochs (epoch 0 only validates).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

from ttsr import names
from ttsr.config import VAL_REF_MODES
from tune.execution.storage import MLFLOW_RUN_KEY
from tune.reporting.formatting import number, text
from tune.reporting.groups import trial_label

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
LOSSES = names.LOSSES
SPEED = (names.EPOCH_SECONDS, names.TRAIN_IMAGES_PER_SECOND, names.PEAK_GPU_MEMORY_GIB)
EPOCH_METRICS = (*QUALITY, names.BICUBIC_PSNR, names.STEP, names.IMAGES_SEEN, *LOSSES, *SPEED)
# speed metric -> (trials column, how the training epochs are summarised)
SPEED_SUMMARY = {
    names.EPOCH_SECONDS: ("mean_epoch_seconds", "mean"),
    names.TRAIN_IMAGES_PER_SECOND: ("mean_train_images_per_s", "mean"),
    names.PEAK_GPU_MEMORY_GIB: ("max_peak_gpu_memory_gib", "max"),
}
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
    """(trials, epochs) data frames; see the module docstring for the columns."""
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
        "label": trial_label(rec.params) if rec.params else rec.trial_id,
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
    scored = [(number(h.get(names.VAL_PSNR)), h) for h in history]
    scored = [(p, h) for p, h in scored if p is not None]
    return max(scored, key=lambda ph: ph[0])[1] if scored else {}


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
    ok = df[maximize].notna() & df[minimize].notna()
    out = pd.Series(False, index=df.index)
    pts = df.loc[ok, [maximize, minimize]]
    for i, (hi, lo) in pts.iterrows():
        dominated = ((pts[maximize] >= hi) & (pts[minimize] <= lo)) & (
            (pts[maximize] > hi) | (pts[minimize] < lo)
        )
        out[i] = not dominated.any()
    return out
