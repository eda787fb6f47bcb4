"""The part of a report that depends on ``Study.report_kind``: its plots, tables, summary
lines and answer. One function per kind; a study without a kind gets the curves only (drawn by
tune/report.py for every study) and the best trial as its answer."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ttsr import names
from tune.reporting import answers, plots
from tune.reporting.formatting import db, duration, fmt, mean_std, number, short, table_text
from tune.reporting.groups import GROUP
from tune.reporting.report_data import ReportData
from tune.reporting.trial_frames import SPEED_SUMMARY, VS_BICUBIC, kept


@dataclass
class Section:
    answer: str
    lines: list[str] = field(default_factory=list)  # for the printed summary
    files: list[Path] = field(default_factory=list)  # plots
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)  # title -> table (HTML)


def make_section(data: ReportData) -> Section:
    kind = data.study.report_kind
    return KINDS[kind](data) if kind in KINDS else Section(answers.best_only(data))


# ------------------------------------------------------------------------------------------------
def speed(data: ReportData) -> Section:
    param = data.study.report_param
    section = Section(answers.speed(data))
    seconds, ips, mem = (f"{c}_mean" for c, _ in SPEED_SUMMARY.values())
    if data.groups.empty or seconds not in data.groups or param not in data.groups:
        return section
    others = [k for k in data.keys if k != param]
    path = data.out_dir / "epoch_time.png"
    section.files.append(
        plots.speed_vs_param(data.groups, param, path, title=data.title, label_keys=others)
    )
    rows = data.groups.dropna(subset=[seconds]).sort_values(param)
    keys = [param, *others]
    section.lines += ["", "seed Exp2-1 table for the data at hand:", speed_table(rows, keys)]
    table = rows[[*keys, seconds, ips, mem, "n"]].rename(
        columns={seconds: "epoch seconds", ips: "train images/s", mem: "peak GPU memory (GiB)"}
    )
    section.tables["speed (means over seeds)"] = table
    return section


def speed_table(rows: pd.DataFrame, keys: list[str]) -> str:
    """The seed's Exp2-1 table: the varied keys, epoch time, images/s, peak memory."""
    heads = [{"batch_size": "batch"}.get(k, k) for k in keys]
    widths = [max(6, len(h)) for h in heads]
    line = " ".join(f"{h:>{w}}" for h, w in zip(heads, widths, strict=True))
    lines = [f"{line} {'epoch time':>12} {'img/s':>8} {'peak mem':>10}"]
    seconds, ips, mem = (f"{c}_mean" for c, _ in SPEED_SUMMARY.values())
    for _, r in rows.iterrows():
        values = " ".join(f"{short(r[k]):>{w}}" for k, w in zip(keys, widths, strict=True))
        gib = number(r.get(mem))
        lines.append(
            f"{values} {duration(r.get(seconds)):>12} {fmt(r.get(ips), '.1f'):>8} "
            f"{(fmt(gib, '.2f') + ' GiB') if gib else 'n/a (cpu)':>10}"
        )
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------
def reference(data: ReportData) -> Section:
    section = Section(answers.reference(data))
    if data.epochs.empty:
        return section
    own = answers.config_value(data.study, "ref_mode")
    modes = answers.extra_ref_modes(data)
    words = lambda m: answers.REF_WORDS.get(m, (f"{m} references", ""))[0]  # noqa: E731
    series = [(names.VAL_PSNR, own), *((names.for_ref_mode(names.VAL_PSNR, m), m) for m in modes)]
    path = data.out_dir / "reference.png"
    in_words = [(metric, words(mode)) for metric, mode in series]
    section.files.append(
        plots.reference_curves(data.epochs, data.trials, in_words, path, title=data.title, x=data.x)
    )
    rows = []
    for _, t in data.trials.iterrows():
        e = data.epochs[data.epochs["trial_id"] == t["trial_id"]]
        row = {"trial": t["label"], "kept epoch": t[names.BEST_EPOCH], "stopped": t["epochs_run"]}
        for metric, mode in series:
            peak = e.dropna(subset=[metric]) if metric in e else e.iloc[0:0]
            row[f"peak epoch {mode}"] = (
                int(peak.loc[peak[metric].idxmax(), names.EPOCH]) if len(peak) else None
            )
            row[f"kept PSNR {mode}"] = t.get(kept(metric))
        for metric, mode in series[1:]:
            row[f"gap {mode}"] = t[names.BEST_VAL_PSNR] - t.get(kept(metric))
        row["bicubic"] = t[names.BICUBIC_PSNR]
        rows.append(row)
    table = pd.DataFrame(rows)
    section.tables["PSNR per reference mode (dB)"] = table
    section.lines += ["", f"PSNR per reference mode (dB; gap = {own} minus the other mode):"]
    section.lines.append(table_text(table))
    return section


# ------------------------------------------------------------------------------------------------
def tradeoff(data: ReportData) -> Section:
    section = Section(answers.tradeoff(data))
    if "pareto" not in data.trials:
        return section
    y, x = data.split_objectives()
    labels = {g[GROUP]: answers.weights_label(g, data.study) for _, g in data.groups.iterrows()}
    path = data.out_dir / "pareto.png"
    section.files.append(
        plots.pareto(data.trials, data.groups, x, y, path, title=data.title, labels=labels)
    )
    front = data.trials[data.trials["pareto"]]
    section.lines += [
        "",
        f"Pareto front ({len(front)} of {len(data.trials)} trials; kept-epoch values):",
        table_text(front[["label", y, x]]),
    ]
    section.tables["Pareto front (trials)"] = front[["label", y, x]]
    g = data.groups
    if (g["n"] > 1).any():
        gf = g[g["pareto"]]
        cols = [GROUP, "n", f"{y}_mean", f"{y}_std", f"{x}_mean", f"{x}_std"]
        section.lines += [
            "",
            f"Pareto front over configuration means ({len(gf)} of {len(g)} configurations):",
            table_text(gf[cols]),
        ]
        section.tables["Pareto front (configuration means)"] = gf[cols]
    return section


# ------------------------------------------------------------------------------------------------
def scaling(data: ReportData) -> Section:
    param = data.study.report_param
    section = Section(answers.scaling(data))
    mean = f"{names.BEST_VAL_PSNR}_mean"
    if data.groups.empty or mean not in data.groups or param not in data.groups:
        return section
    path = data.out_dir / f"best_vs_{param}.png"
    section.files.append(plots.best_vs_param(data.groups, param, path, title=data.title))
    rows = []
    for _, g in data.groups.sort_values(param).iterrows():
        psnr = names.BEST_VAL_PSNR
        rows.append(
            {
                param: g[param],
                "best PSNR (dB)": mean_std(g[mean], g.get(f"{psnr}_std"), g.get(f"{psnr}_n")),
                "bicubic (dB)": fmt(g.get(f"{names.BICUBIC_PSNR}_mean"), ".2f"),
                "vs bicubic": answers.bicubic_verdict(g.get(f"{VS_BICUBIC}_mean")),
                "vs best": g.get("significance"),
            }
        )
    table = pd.DataFrame(rows)
    section.tables[f"best PSNR against {param}"] = table
    section.lines += ["", f"best PSNR against {param}:", table_text(table)]
    return section


# ------------------------------------------------------------------------------------------------
def divergence(data: ReportData) -> Section:
    section = Section(answers.divergence(data))
    if data.epochs.empty:
        return section
    path = data.out_dir / "divergence.png"
    section.files.append(
        plots.divergence_curves(data.epochs, data.trials, path, title=data.title, x=data.x)
    )
    rows = []
    for _, t in data.trials.iterrows():
        white = number(t.get(kept(names.VAL_WHITE_SHARE)))
        rows.append(
            {
                "trial": t["label"],
                "stopped by": answers.stop_signal(
                    t["stop_reason"], t[names.STOP_DETAIL], t.get(names.STOP_SIGNAL)
                ),
                "at epoch": t["epochs_run"],
                "kept epoch": t[names.BEST_EPOCH],
                "kept PSNR": db(t[names.BEST_VAL_PSNR]),
                "box": db(t.get(kept(names.VAL_PSNR_MASK))),
                "outside": db(t.get(kept(names.VAL_PSNR_OUTSIDE))),
                "white (kept)": "n/a" if white is None else f"{white:.1%}",
                "detail": t[names.STOP_DETAIL],
            }
        )
    table = pd.DataFrame(rows)
    section.tables["what stopped each trial"] = table
    section.lines += ["", "what stopped each trial:", table_text(table)]
    return section


KINDS: dict[str, Callable[[ReportData], Section]] = {
    "speed": speed,
    "reference": reference,
    "tradeoff": tradeoff,
    "scaling": scaling,
    "divergence": divergence,
}
