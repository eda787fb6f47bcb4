"""The report's PNG plots (matplotlib, Agg) of its ``epochs``, ``trials`` and ``groups`` frames
(tune/reporting/data.py). Every PSNR axis carries bicubic upsampling as a dashed,
labelled baseline."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display on clusters and CI
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from ttsr import names  # noqa: E402
from tune.reporting.formatting import short  # noqa: E402

BICUBIC_STYLE = {"linestyle": "--", "linewidth": 1.2}
DOTS = {"marker": "o", "ms": 3}
X_LABELS = {names.EPOCH: "epoch (0 = before training)", names.STEP: "optimiser step"}


def bicubic_baseline(ax, trials: pd.DataFrame, colours: dict[str, str] | None = None) -> None:
    """Bicubic PSNR as dashed horizontal lines: one grey line when every trial validated on the
    same images, else one per trial in the trial's colour."""
    if names.BICUBIC_PSNR not in trials:
        return
    values = trials.dropna(subset=[names.BICUBIC_PSNR])
    if values.empty:
        return
    levels = values[names.BICUBIC_PSNR]
    if levels.max() - levels.min() < 1e-6:
        level = float(levels.iloc[0])
        ax.axhline(level, color="gray", label=f"bicubic {level:.2f} dB", **BICUBIC_STYLE)
        return
    for i, (_, row) in enumerate(values.iterrows()):
        colour = (colours or {}).get(row["trial_id"], "gray")
        label = "bicubic (dashed, per trial)" if i == 0 else None
        ax.axhline(row[names.BICUBIC_PSNR], color=colour, label=label, **BICUBIC_STYLE)


def curves(
    epochs: pd.DataFrame, trials: pd.DataFrame, path: Path, *, title: str, x: str = names.EPOCH
) -> Path:
    """val_psnr and val_ssim against epoch (or step), one line per trial, kept epoch starred,
    bicubic dashed on the PSNR panel."""
    metrics = [m for m in (names.VAL_PSNR, names.VAL_SSIM) if m in epochs]
    fig, axes = plt.subplots(1, max(1, len(metrics)), figsize=(6 * max(1, len(metrics)), 4.2))
    axes = [axes] if len(metrics) <= 1 else list(axes)
    labels = dict(zip(trials["trial_id"], trials["label"], strict=False))
    kept = dict(zip(trials["trial_id"], trials.get(names.BEST_EPOCH, []), strict=False))
    colours: dict[str, str] = {}
    for ax, metric in zip(axes, metrics, strict=False):
        for trial_id, rows in epochs.groupby("trial_id", sort=True):
            rows = rows.sort_values(names.EPOCH)
            line = ax.plot(rows[x], rows[metric], label=labels.get(trial_id, trial_id), **DOTS)[0]
            colours[trial_id] = line.get_color()
            star = rows[rows[names.EPOCH] == kept.get(trial_id)]
            if metric == names.VAL_PSNR and not star.empty:
                ax.plot(star[x], star[metric], "*", ms=14, color=line.get_color())
        if metric == names.VAL_PSNR:
            bicubic_baseline(ax, trials, colours)
        _axes(ax, x, metric + (" (dB)" if metric == names.VAL_PSNR else ""))
    if metrics:
        axes[0].set_title("validation PSNR (star: kept epoch; dashed: bicubic)")
        if len(axes) > 1:
            axes[1].set_title("validation SSIM")
        _legend(axes[0], fontsize=7, loc="best")
    return _save(fig, path, suptitle=title)


def speed_vs_param(
    groups: pd.DataFrame, param: str, path: Path, *, title: str, label_keys: Sequence[str]
) -> Path:
    """speed: seconds per epoch and images/s against the varied key, and peak GPU memory."""
    seconds, ips, memory = (
        "mean_epoch_seconds_mean",
        "mean_train_images_per_s_mean",
        "max_peak_gpu_memory_gib_mean",
    )
    df = groups.dropna(subset=[seconds]).sort_values(param)
    fig, (ax, ax_mem) = plt.subplots(1, 2, figsize=(11, 4.2))
    std = df.get("mean_epoch_seconds_std")
    ax.errorbar(df[param], df[seconds], yerr=std, fmt="o-", color="tab:blue", capsize=3)
    for _, row in df.iterrows():
        note = ", ".join(f"{k} {short(row[k])}" for k in label_keys if k in row)
        if note:
            _annotate(ax, note, (row[param], row[seconds]), (4, 6), 8)
    ax.set_xlabel(param)
    ax.set_ylabel("seconds per epoch", color="tab:blue")
    ax.set_xticks(df[param])
    ax.grid(alpha=0.3)
    if ips in df:
        ax2 = ax.twinx()
        ax2.plot(df[param], df[ips], "s--", color="tab:orange")
        ax2.set_ylabel("train images / s", color="tab:orange")
    ax.set_title("epoch time and throughput")
    if memory in df and (df[memory] > 0).any():
        ax_mem.plot(df[param], df[memory], "o-", color="tab:green")
        ax_mem.set_ylabel("peak GPU memory (GiB)")
        ax_mem.set_xlabel(param)
        ax_mem.grid(alpha=0.3)
    else:
        ax_mem.text(0.5, 0.5, "peak GPU memory: not measured (CPU)", ha="center", va="center")
        ax_mem.set_axis_off()
    ax_mem.set_title("peak GPU memory")
    return _save(fig, path, suptitle=title)


def reference_curves(
    epochs: pd.DataFrame,
    trials: pd.DataFrame,
    series: Sequence[tuple[str, str]],
    path: Path,
    *,
    title: str,
    x: str = names.EPOCH,
) -> Path:
    """reference: PSNR per epoch with the study's own references (solid) and each extra mode
    (dash-dot), each curve's peak starred, the kept epoch as a dotted line, bicubic dashed.
    ``series``: (metric, words) pairs, the study's own first."""
    fig, ax = plt.subplots(figsize=(8, 4.8))
    styles = ["-", "-.", ":", (0, (3, 1, 1, 1))]
    styled = [(m, style, words) for (m, words), style in zip(series, styles, strict=False)]
    colours: dict[str, str] = {}
    for _, trial in trials.iterrows():
        rows = epochs[epochs["trial_id"] == trial["trial_id"]].sort_values(names.EPOCH)
        colour = _trial_lines(ax, rows, x, styled, trial["label"], peaks=True)
        colours[trial["trial_id"]] = colour or "gray"
        kept = rows[rows[names.EPOCH] == trial.get(names.BEST_EPOCH)]
        if not kept.empty:
            ax.axvline(kept[x].iloc[0], color=colours[trial["trial_id"]], linestyle=":", lw=1)
    bicubic_baseline(ax, trials, colours)
    _axes(ax, x, "validation PSNR (dB)")
    ax.set_title("PSNR per reference mode (star: peak; dotted: kept epoch; dashed: bicubic)")
    _legend(ax, fontsize=7, loc="best")
    return _save(fig, path, suptitle=title)


def best_vs_param(groups: pd.DataFrame, param: str, path: Path, *, title: str) -> Path:
    """scaling: the kept models' PSNR (mean ± std over seeds) against the varied key, with
    the bicubic PSNR of the same validation images."""
    mean, std = f"{names.BEST_VAL_PSNR}_mean", f"{names.BEST_VAL_PSNR}_std"
    df = groups.dropna(subset=[mean]).sort_values(param)
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    ax.errorbar(df[param], df[mean], yerr=df.get(std), fmt="o-", capsize=3, label="TTSR kept")
    bicubic = f"{names.BICUBIC_PSNR}_mean"
    if bicubic in df and df[bicubic].notna().any():
        ax.plot(df[param], df[bicubic], "x", color="gray", label="bicubic", **BICUBIC_STYLE)
    if param == "fraction":
        ax.set_xscale("log", base=2)
    ax.set_xticks(df[param])
    ax.set_xticklabels([f"{v:g}" for v in df[param]])
    ax.set_xlabel(param)
    ax.set_ylabel("PSNR (dB)")
    ax.grid(alpha=0.3)
    _legend(ax)
    ax.set_title(title)
    return _save(fig, path)


def pareto(
    trials: pd.DataFrame,
    groups: pd.DataFrame,
    x: str,
    y: str,
    path: Path,
    *,
    title: str,
    labels: dict[str, str],
) -> Path:
    """tradeoff: perceptual distance (x, lower better) against PSNR (y, higher better): every
    trial in grey, configuration means (± std over seeds) in red on the Pareto front and
    labelled with their weights (``labels``: group -> text), bicubic dashed."""
    df = trials.dropna(subset=[x, y])
    g = groups.dropna(subset=[f"{x}_mean", f"{y}_mean"])
    front = g[g["pareto"]].sort_values(f"{x}_mean") if "pareto" in g else g.iloc[0:0]
    fig, ax = plt.subplots(figsize=(7.5, 5))
    ax.scatter(df[x], df[y], color="lightgray", edgecolor="gray", label="trials", zorder=2)
    ax.errorbar(
        front[f"{x}_mean"],
        front[f"{y}_mean"],
        xerr=front.get(f"{x}_std"),
        yerr=front.get(f"{y}_std"),
        fmt="o-",
        color="tab:red",
        capsize=3,
        label="Pareto front",
        zorder=3,
    )
    for _, row in front.iterrows():
        text = labels.get(row["group"], row["group"])
        _annotate(ax, text, (row[f"{x}_mean"], row[f"{y}_mean"]), (5, 4), 7)
    bicubic_baseline(ax, trials)
    ax.margins(x=0.25, y=0.1)  # room for the labels at the ends of the front
    ax.set_xlabel(f"{x} (lower is better)")
    ax.set_ylabel(f"{y} (dB, higher is better)")
    ax.grid(alpha=0.3)
    _legend(ax, fontsize=8)
    ax.set_title(title)
    return _save(fig, path)


def divergence_curves(
    epochs: pd.DataFrame, trials: pd.DataFrame, path: Path, *, title: str, x: str = names.EPOCH
) -> Path:
    """divergence: PSNR over the image, inside the inpainting box and outside it (bicubic
    dashed), and the white-pixel shares; kept epoch starred, stop epoch crossed."""
    fig, (ax, ax_white) = plt.subplots(1, 2, figsize=(12, 4.6))
    psnr = [
        (names.VAL_PSNR, "-", "image"),
        (names.VAL_PSNR_MASK, "-.", "box"),
        (names.VAL_PSNR_OUTSIDE, ":", "outside"),
    ]
    white = [(names.VAL_WHITE_SHARE, "-", "image"), (names.VAL_WHITE_SHARE_MASK, "-.", "box")]
    colours: dict[str, str] = {}
    for _, trial in trials.iterrows():
        rows = epochs[epochs["trial_id"] == trial["trial_id"]].sort_values(names.EPOCH)
        colour = None
        for target, series, scale in ((ax, psnr, 1.0), (ax_white, white, 100.0)):
            colour = _trial_lines(target, rows, x, series, trial["label"], colour, scale)
        colours[trial["trial_id"]] = colour or "gray"
        kept = rows[rows[names.EPOCH] == trial.get(names.BEST_EPOCH)]
        if not kept.empty and names.VAL_PSNR in kept:
            ax.plot(kept[x], kept[names.VAL_PSNR], "*", ms=14, color=colours[trial["trial_id"]])
        if trial.get("stop_reason") == names.STOP_DIVERGED and not rows.empty:
            for target in (ax, ax_white):
                target.axvline(rows[x].iloc[-1], color="tab:red", lw=1, alpha=0.6)
    bicubic_baseline(ax, trials, colours)
    for target, ylabel in ((ax, "PSNR (dB)"), (ax_white, "white-saturated pixels (%)")):
        _axes(target, x, ylabel)
        _legend(target, fontsize=7, loc="best")
    ax.set_title("PSNR (star: kept; red line: diverged; dashed: bicubic)")
    ax_white.set_title("share of white pixels")
    return _save(fig, path, suptitle=title)


def _legend(ax, **kwargs) -> None:
    if ax.get_legend_handles_labels()[0]:  # no empty legend (and no warning) without lines
        ax.legend(**kwargs)


def _trial_lines(ax, rows, x: str, series, label: str, colour=None, scale=1.0, peaks=False):
    """One trial's ``series`` ((metric, line style, words) each) in one colour, the first
    line's unless given; each line's peak starred with ``peaks``. Returns the colour."""
    for metric, style, words in series:
        if metric not in rows or rows[metric].isna().all():
            continue
        y = rows[metric] * scale
        line = ax.plot(rows[x], y, linestyle=style, color=colour, label=f"{label}: {words}", **DOTS)
        colour = line[0].get_color()
        if peaks:
            peak = rows.loc[rows[metric].idxmax()]
            ax.plot(peak[x], peak[metric] * scale, "*", ms=13, color=colour)
    return colour


def _axes(ax, x: str, ylabel: str) -> None:
    ax.set_xlabel(X_LABELS.get(x, x))
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)


def _annotate(ax, text: str, xy, offset: tuple[int, int], size: int) -> None:
    ax.annotate(text, xy, textcoords="offset points", xytext=offset, fontsize=size)


def _save(fig, path: Path, suptitle: str | None = None) -> Path:
    if suptitle is not None:
        fig.suptitle(suptitle)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
