"""The answer of each report kind: a short paragraph computed from the data.

One function per ``Study.report_kind`` (``speed``, ``reference``, ``tradeoff``, ``scaling``,
``divergence``) and ``best_only`` for a study without a report kind. Each takes the report's
`ReportData` and returns the paragraph; every number in it comes from the tables.
"""

from __future__ import annotations

import pandas as pd

from ttsr import names
from ttsr.config import LOSS_WEIGHTS, TrainConfig
from tune.reporting.formatting import (
    count,
    db,
    duration,
    fmt,
    number,
    param_phrase,
    short,
    span,
    text,
)
from tune.reporting.groups import GROUP, Difference, complete, difference
from tune.reporting.report_data import ReportData
from tune.reporting.trial_frames import SPEED_SUMMARY, VS_BICUBIC, kept

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


# ------------------------------------------------------------------------------------------------
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
    return out + f"; the difference is {diff.verdict(' s', '.2f')}."


# ------------------------------------------------------------------------------------------------
def extra_ref_modes(data: ReportData) -> list[str]:
    """The extra validation reference modes with data: the config's val_ref_modes, else any
    ``val_psnr_<mode>`` the trials reported."""
    declared = list(config_value(data.study, "val_ref_modes"))
    modes = declared or [m for m in REF_WORDS if m != config_value(data.study, "ref_mode")]
    column = lambda m: names.for_ref_mode(names.VAL_PSNR, m)  # noqa: E731
    return [m for m in modes if column(m) in data.epochs and data.epochs[column(m)].notna().any()]


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
    peaks = [f"epoch {_peak(rows, names.VAL_PSNR)} with {own_words}"]
    peaks += [
        f"epoch {_peak(rows, names.for_ref_mode(names.VAL_PSNR, m))} with {REF_WORDS[m][0]}"
        for m in modes
    ]
    watched = config_value(data.study, "early_stop_metric")
    out = (
        f"Peak at {', '.join(peaks)}; stopped at epoch {best['epochs_run']} "
        f"({best['stop_reason']}, watching {watched}); kept epoch {best[names.BEST_EPOCH]}."
    )
    bicubic = number(best[names.BICUBIC_PSNR])
    for m in modes:
        other = number(best.get(kept(names.for_ref_mode(names.VAL_PSNR, m))))
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
        out += _gap_spread(data, m)
    return out


def _gap_spread(data: ReportData, mode: str) -> str:
    other = kept(names.for_ref_mode(names.VAL_PSNR, mode))
    gaps = (data.trials[names.BEST_VAL_PSNR] - data.trials[other]).dropna()
    if len(gaps) < 2:
        return ""
    return f" Across {len(gaps)} trials the gap is {gaps.mean():.2f} ± {gaps.std():.2f} dB."


# ------------------------------------------------------------------------------------------------
def weights_label(row: pd.Series, study) -> str:
    """The non-zero extra loss weights of a configuration, or 'reconstruction only'."""
    parts = [f"{w}={short(v)}" for w in EXTRA_WEIGHTS if (v := weight(row, w, study))]
    return ", ".join(parts) or "reconstruction only"


def weight(row: pd.Series, key: str, study) -> float:
    value = number(row.get(key))
    if value is not None:
        return value
    return float(config_value(study, key))


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


# ------------------------------------------------------------------------------------------------
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
        return f"{lead} {db(first[col])} {where(first)}; it {_group_vs_bicubic(first)}."
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


def _group_vs_bicubic(row: pd.Series) -> str:
    return bicubic_verdict(row.get(f"{VS_BICUBIC}_mean"))


# ------------------------------------------------------------------------------------------------
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


# ------------------------------------------------------------------------------------------------
def _best_trial(data: ReportData) -> pd.Series | None:
    t = complete(data.trials, names.BEST_VAL_PSNR)
    return None if t.empty else t.loc[t[names.BEST_VAL_PSNR].idxmax()]


def _peak(rows: pd.DataFrame, metric: str) -> str:
    rows = rows.dropna(subset=[metric])
    return "n/a" if rows.empty else str(int(rows.loc[rows[metric].idxmax(), names.EPOCH]))


def _name(column: str) -> str:
    return column.removeprefix("best_")
