"""The report's PNG plots (matplotlib, Agg). Each takes the report's data frames and a path.

Frames (see tune/report.py): ``epochs`` has one row per trial-epoch (trial_id, epoch, metrics);
``trials`` one row per trial (trial_id, parameters, best/final metrics).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display on clusters and CI
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from ttsr import names  # noqa: E402


def curves(epochs: pd.DataFrame, trials: pd.DataFrame, path: Path, *, title: str) -> Path:
    """val_psnr and val_ssim against epoch, one line per trial, best epoch marked (star)."""
    metrics = [m for m in (names.VAL_PSNR, names.VAL_SSIM) if m in epochs]
    fig, axes = plt.subplots(1, max(1, len(metrics)), figsize=(6 * max(1, len(metrics)), 4.2))
    axes = [axes] if len(metrics) <= 1 else list(axes)
    labels = dict(zip(trials["trial_id"], trials["label"], strict=False))
    for ax, metric in zip(axes, metrics, strict=False):
        for trial_id, rows in epochs.groupby("trial_id", sort=True):
            rows = rows.sort_values(names.EPOCH)
            line = ax.plot(rows[names.EPOCH], rows[metric], marker="o", ms=3)[0]
            line.set_label(labels.get(trial_id, trial_id))
            if metric == names.VAL_PSNR and rows[metric].notna().any():
                best = rows.loc[rows[metric].idxmax()]
                ax.plot(best[names.EPOCH], best[metric], "*", ms=14, color=line.get_color())
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(metric + (" (dB)" if metric == names.VAL_PSNR else ""))
        ax.grid(alpha=0.3)
    if metrics:
        axes[0].set_title("validation PSNR (star: best epoch)")
        if len(axes) > 1:
            axes[1].set_title("validation SSIM")
        axes[-1].legend(fontsize=7, loc="best")
    fig.suptitle(title)
    return _save(fig, path)


def epoch_time_vs_size(trials: pd.DataFrame, path: Path, *, title: str) -> Path:
    """train-time: seconds per epoch and images/s against resolution (batch in the label)."""
    df = trials.dropna(subset=[names.EPOCH_SECONDS]).sort_values("size")
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    ax.plot(df["size"], df[names.EPOCH_SECONDS], "o-", color="tab:blue")
    for _, row in df.iterrows():
        ax.annotate(
            f"batch {int(row['batch_size'])}",
            (row["size"], row[names.EPOCH_SECONDS]),
            textcoords="offset points",
            xytext=(4, 6),
            fontsize=8,
        )
    ax.set_xlabel("image size (px)")
    ax.set_ylabel("seconds per epoch", color="tab:blue")
    ax.set_xticks(df["size"])
    ax.grid(alpha=0.3)
    if names.TRAIN_IMAGES_PER_SECOND in df:
        ax2 = ax.twinx()
        ax2.plot(df["size"], df[names.TRAIN_IMAGES_PER_SECOND], "s--", color="tab:orange")
        ax2.set_ylabel("train images / s", color="tab:orange")
    ax.set_title(title)
    return _save(fig, path)


def best_vs_param(trials: pd.DataFrame, param: str, path: Path, *, title: str) -> Path:
    """dataset-fraction / resolution: best val_psnr against the grid parameter."""
    df = trials.dropna(subset=[names.BEST_VAL_PSNR]).sort_values(param)
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    ax.plot(df[param], df[names.BEST_VAL_PSNR], "o-", label="TTSR best val_psnr")
    if names.BICUBIC_PSNR in df and df[names.BICUBIC_PSNR].notna().any():
        ax.plot(df[param], df[names.BICUBIC_PSNR], "x:", color="gray", label="bicubic")
    if param == "fraction":
        ax.set_xscale("log", base=2)
    ax.set_xticks(df[param])
    ax.set_xticklabels([f"{v:g}" for v in df[param]])
    ax.set_xlabel(param)
    ax.set_ylabel("PSNR (dB)")
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title(title)
    return _save(fig, path)


def pareto(trials: pd.DataFrame, x: str, y: str, path: Path, *, title: str) -> Path:
    """loss-weights: val_perceptual (x, lower better) against val_psnr (y, higher better);
    the Pareto front is highlighted and labelled with its weights."""
    df = trials.dropna(subset=[x, y])
    front = df[df["pareto"]].sort_values(x)
    fig, ax = plt.subplots(figsize=(7, 4.8))
    ax.scatter(df[x], df[y], color="lightgray", edgecolor="gray", label="trials", zorder=2)
    ax.plot(front[x], front[y], "o-", color="tab:red", label="Pareto front", zorder=3)
    for _, row in front.iterrows():
        ax.annotate(
            row["label"], (row[x], row[y]), textcoords="offset points", xytext=(5, 4), fontsize=7
        )
    ax.margins(x=0.25, y=0.1)  # room for the labels at the ends of the front
    ax.set_xlabel(f"{x} (lower is better)")
    ax.set_ylabel(f"{y} (dB, higher is better)")
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title(title)
    return _save(fig, path)


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
