"""The part of a report that depends on ``Study.report_kind`` (``speed``, ``reference``,
``tradeoff``, ``scaling``, ``divergence``): per kind, its answer (a short paragraph computed from
the data: every number in it comes from the tables) and its `Section` (the answer, plots, HTML
tables and summary lines). A study without a kind gets the curves only (drawn by tune/report.py
for every study) and the best trial as its answer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ttsr import names
from ttsr.config import LOSS_WEIGHTS, TrainConfig
from tune.reporting import plots
from tune.reporting.data import SPEED_SUMMARY, VS_BICUBIC, ReportData, kept
from tune.reporting.formatting import (
    count,
    db,
    duration,
    fmt,
    mean_std,
    number,
    param_phrase,
    short,
    span,
    table_text,
    text,
)
from tune.reporting.groups import GROUP, Difference, complete, difference

REF_WORDS = {  # TrainConfig.ref_mode -> (plural noun, adjective)
    "gt": ("ground-truth references", "ground-truth-reference"),
    "gt-augmented": ("augmented ground-truth references", "augmented-reference"),
    "other": ("unseen references", "unseen-reference"),
    "paired": ("paired references", "paired-reference"),
}
EXTRA_WEIGHTS = tuple(w for w in LOSS_WEIGHTS if w != "rec_w")  # 0 for all = reconstruction only
# stop_detail text of the training loop's divergence checks -> the signal, in words
SIGNALS = (
    ("loss spike", "loss spike"),
    ("non-finite training loss", "non-finite loss"),
    ("whitening", "white pixels"),
    ("collapsed", "collapsed output"),
    ("fell more than", "PSNR floor"),
    (" is nan", "non-finite PSNR"),
    (" is inf", "non-finite PSNR"),
)


def config_value(study, key: str):
    """A fixed TrainConfig value of the study, or TrainConfig's default."""
    return study.config.get(key, TrainConfig.model_fields[key].default)


def bicubic_verdict(vs_bicubic) -> str:
    d = number(vs_bicubic)
    if d is None:
        return "has no bicubic PSNR to compare with"
    if d > 0:
        return f"beats bicubic by {d:.2f} dB"
    return f"does NOT beat bicubic ({abs(d):.2f} dB below)"


SIGNAL_WORDS = {
    "non_finite_loss": "non-finite loss",
    "loss_spike": "loss spike",
    "collapse": "collapsed output",
    "whitening": "white pixels",
    "psnr_floor": "PSNR floor",
    "non_finite_psnr": "non-finite PSNR",
}


def stop_signal(stop_reason, detail, signal=None) -> str:
    """Which signal ended a trial: patience, max_epochs, ... or for a diverged one the check
    that fired (loss spike, non-finite loss, white pixels, collapsed output, PSNR floor): the
    loop's ``stop_signal`` when it reported one, else read from the detail's wording."""
    reason = text(stop_reason) or "unknown"
    if reason != names.STOP_DIVERGED:
        return reason
    if text(signal) in SIGNAL_WORDS:
        return SIGNAL_WORDS[text(signal)]
    found = (text(detail) or "").lower()
    return next((word for key, word in SIGNALS if key in found), "diverged")


def best_only(data: ReportData) -> str:
    row = _best_trial(data)
    if row is None:
        return "No trial reported a validation PSNR."
    return (
        f"Best trial {row['label']}: {db(row[names.BEST_VAL_PSNR])} at epoch "
        f"{row[names.BEST_EPOCH]}; it {bicubic_verdict(row[VS_BICUBIC])}."
    )


def speed(data: ReportData) -> str:
    param = data.study.report_param
    time_col, ips_col, mem_col = (f"{c}_mean" for c, _ in SPEED_SUMMARY.values())
    g = complete(data.groups, time_col, param)
    if g.empty:
        return "No trial finished a training epoch, so there is no timing."
    g = g.sort_values(param)
    first, last = g.iloc[0], g.iloc[-1]
    if len(g) == 1:
        return f"One setting ran ({param}={short(first[param])}): {duration(first[time_col])}."
    unit = " px" if param == "size" else ""
    ratio = last[time_col] / first[time_col]
    change = f"grows x{ratio:.1f}" if ratio >= 1 else f"falls x{1 / ratio:.1f}"
    out = (
        f"Epoch time {change} from {short(first[param])} to {short(last[param])}{unit} "
        f"({duration(first[time_col])} to {duration(last[time_col])} per epoch"
    )
    others = [k for k in data.keys if k != param]
    out += "".join(f", {k} {short(first[k])} to {short(last[k])}" for k in others) + ")"
    ips = (number(first.get(ips_col)), number(last.get(ips_col)))
    if None not in ips:
        out += f"; throughput {'falls' if ips[1] < ips[0] else 'rises'} from {ips[0]:.1f} to "
        out += f"{ips[1]:.1f} train images/s"
    mem = (number(first.get(mem_col)), number(last.get(mem_col)))
    if None not in mem and max(mem) > 0:
        out += f"; peak GPU memory {mem[0]:.2f} to {mem[1]:.2f} GiB"
    else:
        out += "; peak GPU memory not measured (CPU)"
    spread = data.spread.get(SPEED_SUMMARY[names.EPOCH_SECONDS][0])
    diff = Difference(float(last[time_col] - first[time_col]), spread)
    return out + f"; the difference is {diff.verdict(' s')}."


def extra_ref_modes(data: ReportData) -> list[str]:
    """The extra validation reference modes with data: the config's val_ref_modes, else any
    ``val_psnr_<mode>`` the trials reported."""
    declared = list(config_value(data.study, "val_ref_modes"))
    modes = declared or [m for m in REF_WORDS if m != config_value(data.study, "ref_mode")]
    return [
        m for m in modes if ref_psnr(m) in data.epochs and data.epochs[ref_psnr(m)].notna().any()
    ]


def ref_psnr(mode: str) -> str:
    """The epochs column of the PSNR validated with ``mode`` references."""
    return names.for_ref_mode(names.VAL_PSNR, mode)


def reference(data: ReportData) -> str:
    own = config_value(data.study, "ref_mode")
    own_words, own_adj = REF_WORDS.get(own, (f"{own} references", f"{own}-reference"))
    modes = extra_ref_modes(data)
    best = _best_trial(data)
    if best is None:
        return "No trial reported a validation PSNR."
    if not modes:
        return (
            f"Validated only with {own_words}: how much of the {db(best[names.BEST_VAL_PSNR])} "
            "comes from copying the reference is not measured (set val_ref_modes: [other])."
        )
    rows = data.epochs[data.epochs["trial_id"] == best["trial_id"]]
    found = [(_peak(rows, names.VAL_PSNR), own_words)]
    found += [(_peak(rows, ref_psnr(m)), REF_WORDS[m][0]) for m in modes]
    peaks = [f"epoch {'n/a' if e is None else e} with {words}" for e, words in found]
    watched = config_value(data.study, "early_stop_metric")
    out = (
        f"Peak at {', '.join(peaks)}; stopped at epoch {best['epochs_run']} "
        f"({best['stop_reason']}, watching {watched}); kept epoch {best[names.BEST_EPOCH]}."
    )
    bicubic = number(best[names.BICUBIC_PSNR])
    for m in modes:
        other = number(best.get(kept(ref_psnr(m))))
        if other is None:
            continue
        gap = number(best[names.BEST_VAL_PSNR]) - other
        out += (
            f" With {REF_WORDS[m][0]} the model is {abs(gap):.2f} dB "
            f"{'below' if gap >= 0 else 'above'} its {own_adj} quality"
        )
        if bicubic is not None:
            side = "below" if other < bicubic else "above"
            verdict = "it copies" if other < bicubic else "it also super-resolves on its own"
            out += f" and {abs(other - bicubic):.2f} dB {side} bicubic ({db(bicubic)}): {verdict}."
        else:
            out += "."
        gaps = (data.trials[names.BEST_VAL_PSNR] - data.trials[kept(ref_psnr(m))]).dropna()
        if len(gaps) >= 2:
            out += f" Across {len(gaps)} trials the gap is {gaps.mean():.2f} ± {gaps.std():.2f} dB."
    return out


def weights_label(row: pd.Series, study) -> str:
    """The non-zero extra loss weights of a configuration, or 'reconstruction only'."""
    parts = [f"{w}={short(v)}" for w in EXTRA_WEIGHTS if (v := weight(row, w, study))]
    return ", ".join(parts) or "reconstruction only"


def weight(row: pd.Series, key: str, study) -> float:
    value = number(row.get(key))
    return float(config_value(study, key)) if value is None else value


def tradeoff(data: ReportData) -> str:
    hi, lo = data.split_objectives()
    g = complete(data.groups, f"{hi}_mean", f"{lo}_mean")
    if g.empty:
        return "No trial reported both objectives."
    ref = g[[all(weight(r, w, data.study) == 0 for w in EXTRA_WEIGHTS) for _, r in g.iterrows()]]
    front = g[g["pareto"]] if "pareto" in g else g
    on_front = f"{len(front)} of {len(g)} configurations are on the Pareto front"
    if ref.empty:
        best = front.loc[front[f"{hi}_mean"].idxmax()]
        return (
            "No reconstruction-only configuration (per_w = tpl_w = adv_w = 0) ran, so no trade "
            f"is measured against it; {on_front}; its highest-PSNR point "
            f"({weights_label(best, data.study)}) reaches {db(best[f'{hi}_mean'])}."
        )
    r = ref.iloc[0]
    out = (
        f"Against reconstruction only ({db(r[f'{hi}_mean'])}, {_name(lo)} "
        f"{fmt(r[f'{lo}_mean'], '.4f')}, n={int(r[f'{hi}_n'])}; it "
        f"{bicubic_verdict(r.get(f'{VS_BICUBIC}_mean'))}):"
    )
    # every other configuration against it: the front's first (they are the trade-offs), then
    # the dominated ones (worse on both, or no better), each with its significance
    others = g[g[GROUP] != r[GROUP]]
    if "pareto" in others:
        others = others.assign(_front=others["pareto"].astype(bool))
        others = others.sort_values(["_front", f"{lo}_mean"], ascending=[False, True])
    trades = [_trade(data, row, r, hi, lo) for _, row in others.iterrows()]
    if bool(front[GROUP].eq(r[GROUP]).all()) and len(front) == 1:
        whole = f"no weights trade PSNR for a lower {_name(lo)}: it is the whole front"
        return out + " " + "; ".join([whole, *trades]) + "."
    return out + " " + "; ".join(trades) + f". {on_front}."


def _trade(data: ReportData, g: pd.Series, ref: pd.Series, hi: str, lo: str) -> str:
    dy = difference(g, ref, hi, data.spread.get(hi))
    dx = difference(g, ref, lo, data.spread.get(lo))
    rel = dx.delta / float(ref[f"{lo}_mean"]) if number(ref[f"{lo}_mean"]) else float("nan")
    who, what = weights_label(g, data.study), _name(lo)
    values = f"{what} {fmt(g[f'{lo}_mean'], '.4f')} vs {fmt(ref[f'{lo}_mean'], '.4f')}"
    if dy.delta < 0 and dx.delta < 0:
        text_ = f"{who} trades {-dy.delta:.2f} dB PSNR for {_percent(-rel)} lower {what}"
    elif dx.delta < 0:
        text_ = f"{who} is better on both: +{dy.delta:.2f} dB and {_percent(-rel)} lower {what}"
    elif dy.delta < 0:
        text_ = f"{who} is worse on both: {dy.delta:.2f} dB and {_percent(rel)} higher {what}"
    else:
        text_ = f"{who} gains {dy.delta:.2f} dB PSNR at {_percent(rel)} higher {what}"
    return f"{text_} ({values}; {_certainty(dy, dx)})"


def _percent(share: float) -> str:
    """A relative change as the answer writes it: one decimal, never a bare '0%'."""
    if share != share:  # NaN: no reference value
        return "an unknown share"
    return f"{share:.1%}" if abs(share) >= 0.001 else "less than 0.1%"


def _certainty(dy: Difference, dx: Difference) -> str:
    if dy.significant is None or dx.significant is None:
        return "single seed: spread unknown"
    if dy.significant and dx.significant:
        return "both beyond two standard errors of the seed spread"
    if not dy.significant and not dx.significant:
        return "both within two standard errors of the seed spread: not significant"
    which = "PSNR" if dy.significant else "perceptual"
    return f"only the {which} change is beyond two standard errors of the seed spread"


def scaling(data: ReportData) -> str:
    param, col = data.study.report_param, f"{names.BEST_VAL_PSNR}_mean"
    g = complete(data.groups, col, param)
    if g.empty:
        return "No trial reported a validation PSNR."
    g = g.sort_values(param)
    first, last = g.iloc[0], g.iloc[-1]
    where = lambda row: param_phrase(param, row[param])  # noqa: E731
    lead = f"{data.budget.prefix}, best PSNR" if data.budget.prefix else "best PSNR"
    lead = lead[0].upper() + lead[1:]
    if len(g) == 1:
        verdict = bicubic_verdict(first.get(f"{VS_BICUBIC}_mean"))
        return f"{lead} {db(first[col])} {where(first)}; it {verdict}."
    rise = difference(last, first, names.BEST_VAL_PSNR, data.spread.get(names.BEST_VAL_PSNR))
    out = (
        f"{lead} {'rises' if rise.delta >= 0 else 'falls'} from {db(first[col])} {where(first)} "
        f"to {db(last[col])} {where(last)}"
    )
    bicubic = f"{names.BICUBIC_PSNR}_mean"
    ends = list(dict.fromkeys(fmt(r.get(bicubic), ".2f") for r in (first, last)))
    out += f" (bicubic {' and '.join(ends)} dB)"
    peak = g.loc[g[col].idxmax()]
    if peak.name not in (first.name, last.name):
        out += f"; it peaks {where(peak)} ({db(peak[col])})"
    out += f"; the change is {rise.verdict()}."
    out += confounds(data, param)
    margins = [(where(r), number(r.get(f"{VS_BICUBIC}_mean"))) for _, r in g.iterrows()]
    losing = [at for at, margin in margins if margin is None or margin <= 0]
    out += f" The best model beats bicubic at {len(g) - len(losing)} of {len(g)} settings"
    return out + (f" (not {', '.join(losing)})." if losing else ".")


def confounds(data: ReportData, param: str) -> str:
    """What else differs between the settings of ``param`` (other varied keys such as the batch
    size, the optimiser steps made), as a sentence; "" when nothing does."""
    t = data.trials
    others = []
    for key in data.keys:
        values = t[key].dropna().unique() if key != param and key in t else []
        if len(values) > 1:
            others.append(f"{key} ({', '.join(short(v) for v in sorted(values))})")
    steps = t[names.STEP].dropna() if names.STEP in t else pd.Series(dtype=float)
    if steps.nunique() > 1:
        images = t[names.IMAGES_SEEN].dropna() if names.IMAGES_SEEN in t else steps.iloc[0:0]
        made = f"optimiser steps ({span(steps)})"
        if images.nunique() == 1:
            made += f" for the same {count(images.iloc[0])} images seen"
        others.append(made)
    if not others:
        return ""
    return (
        f" Not a clean comparison: the settings also differ in {' and '.join(others)}, so the "
        f"change cannot be put on {param} alone."
    )


def diverged_note(data: ReportData) -> str:
    """The trials a divergence check stopped, by name, and what the group means do with them
    (they count: their kept epoch is the last healthy one); "" when none diverged."""
    t = data.trials
    if t.empty or "stop_reason" not in t:
        return ""
    rows = t[t["stop_reason"] == names.STOP_DIVERGED]
    if rows.empty:
        return ""
    named = []
    for _, r in rows.iterrows():
        signal = stop_signal(r["stop_reason"], r[names.STOP_DETAIL], r.get(names.STOP_SIGNAL))
        named.append(
            f"{r['label']} ({signal} at epoch {r['epochs_run']}, kept epoch {r[names.BEST_EPOCH]})"
        )
    return (
        f"Diverged: {'; '.join(named)}. Included in their configurations' means with the kept "
        "epoch's values (the last epoch before the divergence check fired)."
    )


def divergence(data: ReportData) -> str:
    t = data.trials
    if t.empty:
        return "No trial ran."
    diverged = t[t["stop_reason"] == names.STOP_DIVERGED]
    signals = [
        stop_signal(r["stop_reason"], r[names.STOP_DETAIL], r.get(names.STOP_SIGNAL))
        for _, r in diverged.iterrows()
    ]
    counts = {s: signals.count(s) for s in dict.fromkeys(signals)}
    out = f"{len(diverged)} of {len(t)} trials diverged"
    out += f" ({', '.join(f'{s}: {n}' for s, n in counts.items())})." if counts else "."
    shown = t if len(t) <= 4 else t.loc[[t[names.BEST_VAL_PSNR].idxmax(), *diverged.index[:3]]]
    return out + "".join(" " + _trial_story(r) for _, r in shown.iterrows())


def _trial_story(r: pd.Series) -> str:
    signal = stop_signal(r["stop_reason"], r[names.STOP_DETAIL], r.get(names.STOP_SIGNAL))
    if r["stop_reason"] == names.STOP_DIVERGED:
        out = f"{r['label']}: {signal} stopped it at epoch {r['epochs_run']}"
        detail = text(r[names.STOP_DETAIL])
        out += f" ({detail})" if detail else ""
    else:
        out = f"{r['label']}: no divergence signal fired; stopped at epoch {r['epochs_run']} "
        out += f"({signal})"
    kept_epoch = r[names.BEST_EPOCH]
    if number(kept_epoch) is None:
        return out + "; nothing kept."
    out += f"; kept epoch {int(kept_epoch)}"
    out += " (the model before training)" if int(kept_epoch) == 0 else ""
    out += f": {db(r[names.BEST_VAL_PSNR])}"
    box, outside = r.get(kept(names.VAL_PSNR_MASK)), r.get(kept(names.VAL_PSNR_OUTSIDE))
    if number(box) is not None:
        out += f" (box {db(box)}, outside {db(outside)})"
    white = number(r.get(kept(names.VAL_WHITE_SHARE)))
    if white is not None:
        out += f", {white:.1%} white pixels"
    return out + f"; it {bicubic_verdict(r[VS_BICUBIC])}."


def _best_trial(data: ReportData) -> pd.Series | None:
    t = complete(data.trials, names.BEST_VAL_PSNR)
    return None if t.empty else t.loc[t[names.BEST_VAL_PSNR].idxmax()]


def _peak(rows: pd.DataFrame, metric: str) -> int | None:
    """The epoch of the highest ``metric`` in ``rows`` (None when there is none)."""
    rows = rows.dropna(subset=[metric]) if metric in rows else rows.iloc[0:0]
    return None if rows.empty else int(rows.loc[rows[metric].idxmax(), names.EPOCH])


def _name(column: str) -> str:
    return column.removeprefix("best_")


@dataclass
class Section:
    answer: str
    lines: list[str] = field(default_factory=list)  # for the printed summary
    files: list[Path] = field(default_factory=list)  # plots
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)  # title -> table (HTML)

    def add(self, title: str, table: pd.DataFrame, heading: str = "") -> None:
        """A table for the page (``title``) and the printed summary (``heading``, else title)."""
        self.tables[title] = table
        self.lines += ["", heading or f"{title}:", table_text(table)]


def make_section(data: ReportData) -> Section:
    kind = data.study.report_kind
    return KINDS[kind](data) if kind in KINDS else Section(best_only(data))


def speed_section(data: ReportData) -> Section:
    param = data.study.report_param
    section = Section(speed(data))
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


def reference_section(data: ReportData) -> Section:
    section = Section(reference(data))
    if data.epochs.empty:
        return section
    own = config_value(data.study, "ref_mode")
    modes = extra_ref_modes(data)
    words = lambda m: REF_WORDS.get(m, (f"{m} references", ""))[0]  # noqa: E731
    series = [(names.VAL_PSNR, own), *((ref_psnr(m), m) for m in modes)]
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
            row[f"peak epoch {mode}"] = _peak(e, metric)
            row[f"kept PSNR {mode}"] = t.get(kept(metric))
        for metric, mode in series[1:]:
            row[f"gap {mode}"] = t[names.BEST_VAL_PSNR] - t.get(kept(metric))
        row["bicubic"] = t[names.BICUBIC_PSNR]
        rows.append(row)
    heading = f"PSNR per reference mode (dB; gap = {own} minus the other mode):"
    section.add("PSNR per reference mode (dB)", pd.DataFrame(rows), heading)
    return section


def tradeoff_section(data: ReportData) -> Section:
    section = Section(tradeoff(data))
    if "pareto" not in data.trials:
        return section
    y, x = data.split_objectives()
    labels = {g[GROUP]: weights_label(g, data.study) for _, g in data.groups.iterrows()}
    path = data.out_dir / "pareto.png"
    section.files.append(
        plots.pareto(data.trials, data.groups, x, y, path, title=data.title, labels=labels)
    )
    front = data.trials[data.trials["pareto"]]
    heading = f"Pareto front ({len(front)} of {len(data.trials)} trials; kept-epoch values):"
    section.add("Pareto front (trials)", front[["label", y, x]], heading)
    g = data.groups
    if (g["n"] > 1).any():
        gf = g[g["pareto"]]
        heading = f"Pareto front over configuration means ({len(gf)} of {len(g)} configurations):"
        cols = [GROUP, "n", f"{y}_mean", f"{y}_std", f"{x}_mean", f"{x}_std"]
        section.add("Pareto front (configuration means)", gf[cols], heading)
    return section


def scaling_section(data: ReportData) -> Section:
    param = data.study.report_param
    section = Section(scaling(data))
    mean = f"{names.BEST_VAL_PSNR}_mean"
    if data.groups.empty or mean not in data.groups or param not in data.groups:
        return section
    path = data.out_dir / f"best_vs_{param}.png"
    section.files.append(plots.best_vs_param(data.groups, param, path, title=data.title))
    rows = []
    psnr = names.BEST_VAL_PSNR
    for _, g in data.groups.sort_values(param).iterrows():
        rows.append(
            {
                param: g[param],
                "best PSNR (dB)": mean_std(g[mean], g.get(f"{psnr}_std"), g.get(f"{psnr}_n")),
                "bicubic (dB)": fmt(g.get(f"{names.BICUBIC_PSNR}_mean"), ".2f"),
                "vs bicubic": bicubic_verdict(g.get(f"{VS_BICUBIC}_mean")),
                "vs best": g.get("significance"),
            }
        )
    section.add(f"best PSNR against {param}", pd.DataFrame(rows))
    return section


def divergence_section(data: ReportData) -> Section:
    section = Section(divergence(data))
    if data.epochs.empty:
        return section
    path = data.out_dir / "divergence.png"
    section.files.append(
        plots.divergence_curves(data.epochs, data.trials, path, title=data.title, x=data.x)
    )
    rows = []
    for _, t in data.trials.iterrows():
        white = number(t.get(kept(names.VAL_WHITE_SHARE)))
        signal = stop_signal(t["stop_reason"], t[names.STOP_DETAIL], t.get(names.STOP_SIGNAL))
        rows.append(
            {
                "trial": t["label"],
                "stopped by": signal,
                "at epoch": t["epochs_run"],
                "kept epoch": t[names.BEST_EPOCH],
                "kept PSNR": db(t[names.BEST_VAL_PSNR]),
                "box": db(t.get(kept(names.VAL_PSNR_MASK))),
                "outside": db(t.get(kept(names.VAL_PSNR_OUTSIDE))),
                "white (kept)": "n/a" if white is None else f"{white:.1%}",
                "detail": t[names.STOP_DETAIL],
            }
        )
    section.add("what stopped each trial", pd.DataFrame(rows))
    return section


KINDS = {  # Study.report_kind -> its section
    "speed": speed_section,
    "reference": reference_section,
    "tradeoff": tradeoff_section,
    "scaling": scaling_section,
    "divergence": divergence_section,
}
