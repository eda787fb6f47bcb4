"""A study's report: Parquet tables, PNG plots, a printed summary, all logged to the parent run.

    python tune/report.py --study loss-weights [--run PATH] [--storage ray_results]

Runs automatically at the end of ``tune/run.py``. Reads Tune's results from storage (the latest
invocation of the study unless ``--run`` names one) and the MLflow parent run recorded there.

Outputs (in ``<experiment dir>/report/``):
- ``trials.parquet``: one row per trial (parameters, best and final metrics, stop reason,
  best checkpoint, MLflow child run id);
- ``epochs.parquet``: one row per trial-epoch (every reported metric);
- ``curves.png`` (val_psnr/val_ssim per epoch, best epochs marked), plus per study:
  ``epoch_time.png`` (train-time), ``best_vs_fraction.png`` (dataset-fraction),
  ``best_vs_size.png`` (resolution), ``pareto.png`` (loss-weights).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import pandas as pd  # noqa: E402

from ttsr import names  # noqa: E402
from ttsr.tracking import MLFLOW_RUN_KEY  # noqa: E402
from tune.studies import Study  # noqa: E402

TRIAL_KEYS = ("trial_id", "status", "label", "epochs_run", "stop_reason", "best_checkpoint")
EPOCH_METRICS = (
    names.VAL_PSNR,
    names.VAL_SSIM,
    names.VAL_LPIPS_PROXY,
    names.VAL_PSNR_MASK,
    names.VAL_PSNR_OUTSIDE,
    names.BICUBIC_PSNR,
    names.LOSS_TOTAL,
    names.LOSS_REC,
    names.LOSS_PER,
    names.LOSS_TPL,
    names.LOSS_ADV,
    names.LOSS_D,
    names.EPOCH_SECONDS,
    names.TRAIN_IMAGES_PER_SECOND,
    names.PEAK_GPU_MEMORY_GIB,
)


@dataclass
class TrialRecord:
    """What the report needs from one trial (built from Tune's results, or by tests)."""

    trial_id: str
    status: str  # Tune's: TERMINATED, ERROR, ...
    params: dict[str, Any]  # the trial's effective values of the varied keys
    history: list[dict[str, Any]]  # every report, in order
    best_checkpoint: str | None = None
    max_epochs: int | None = None


@dataclass
class Report:
    trials: pd.DataFrame
    epochs: pd.DataFrame
    files: list[Path] = field(default_factory=list)
    best: dict[str, Any] = field(default_factory=dict)
    summary: str = ""


# ------------------------------------------------------------------------------------------------
def frames(
    records: list[TrialRecord], *, scheduler: str = "fifo"
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(trials, epochs) data frames; trials carry best-epoch and final-epoch metrics."""
    epoch_rows, trial_rows = [], []
    for rec in records:
        history = [h for h in rec.history if names.EPOCH in h]
        for h in history:
            row = {"trial_id": rec.trial_id, names.EPOCH: int(h[names.EPOCH])}
            row.update({m: _number(h.get(m)) for m in EPOCH_METRICS})
            epoch_rows.append(row)
        last = history[-1] if history else {}
        psnrs = [(_number(h.get(names.VAL_PSNR)), h) for h in history]
        psnrs = [(p, h) for p, h in psnrs if p is not None]
        best = max(psnrs, key=lambda ph: ph[0])[1] if psnrs else {}
        stop = last.get(names.STOP_REASON)
        if rec.status == "ERROR":
            stop = "error"
        elif not stop and history:
            finished = rec.max_epochs is not None and int(last[names.EPOCH]) >= rec.max_epochs
            stop = (
                names.STOP_MAX_EPOCHS
                if finished
                else (
                    "asha" if scheduler == "asha" and rec.status == "TERMINATED" else "incomplete"
                )
            )
        row = {
            "trial_id": rec.trial_id,
            "status": rec.status,
            "label": ", ".join(f"{k}={_short(v)}" for k, v in rec.params.items()) or rec.trial_id,
            "epochs_run": len(history),
            "stop_reason": stop,
            names.BEST_EPOCH: best.get(names.EPOCH),
            names.BEST_VAL_PSNR: _number(best.get(names.VAL_PSNR)),
            "best_checkpoint": rec.best_checkpoint,
            MLFLOW_RUN_KEY: last.get(MLFLOW_RUN_KEY),
        }
        row.update(rec.params)
        for m in EPOCH_METRICS:  # final-epoch values (what the searcher saw)
            row[m] = _number(last.get(m))
        trial_rows.append(row)
    trials = pd.DataFrame(trial_rows)
    epochs = pd.DataFrame(epoch_rows, columns=["trial_id", names.EPOCH, *EPOCH_METRICS])
    return trials, epochs


def pareto_mask(df: pd.DataFrame, maximize: str, minimize: str) -> pd.Series:
    """True for trials no other trial beats on both objectives (ties are not domination)."""
    ok = df[maximize].notna() & df[minimize].notna()
    out = pd.Series(False, index=df.index)
    pts = df.loc[ok, [maximize, minimize]]
    for i, (hi, lo) in pts.iterrows():
        dominated = ((pts[maximize] >= hi) & (pts[minimize] <= lo)) & (
            (pts[maximize] > hi) | (pts[minimize] < lo)
        )
        out[i] = not dominated.any()
    return out


def best_trial(trials: pd.DataFrame, study: Study) -> dict[str, Any]:
    """Single objective: the best trial on its best-epoch value (val_psnr) or final value;
    multi-objective: the front's highest-PSNR point (the whole front is in the report)."""
    if trials.empty:
        return {}
    metric, mode = study.metric, study.mode
    col = names.BEST_VAL_PSNR if metric == names.VAL_PSNR else metric
    df = trials.dropna(subset=[col]) if col in trials else trials.iloc[0:0]
    if study.multi_objective and "pareto" in trials:
        df = df[trials.loc[df.index, "pareto"]]
    if df.empty:
        return {}
    row = df.loc[df[col].idxmax() if mode == "max" else df[col].idxmin()]
    return row.to_dict()


def train_time_table(trials: pd.DataFrame) -> str:
    """The seed's Exp2-1 table for the data at hand."""
    lines = [
        f"{'size':>6} {'batch':>6} {'epoch time':>12} {'img/s':>8} {'peak mem':>10}",
    ]
    for _, r in trials.sort_values("size").iterrows():
        mem = r.get(names.PEAK_GPU_MEMORY_GIB)
        lines.append(
            f"{int(r['size']):>6} {int(r['batch_size']):>6} "
            f"{_duration(r.get(names.EPOCH_SECONDS)):>12} "
            f"{_fmt(r.get(names.TRAIN_IMAGES_PER_SECOND), '.1f'):>8} "
            f"{(_fmt(mem, '.2f') + ' GiB') if _number(mem) else 'n/a (cpu)':>10}"
        )
    return "\n".join(lines)


def build(records: list[TrialRecord], study: Study, out_dir: Path) -> Report:
    """Tables, plots and the summary text for one study invocation."""
    from tune import plots

    trials, epochs = frames(records, scheduler=study.scheduler)
    out_dir.mkdir(parents=True, exist_ok=True)
    if study.multi_objective and not trials.empty:
        a, b = study.objectives
        maximize, minimize = (a, b) if a.mode == "max" else (b, a)
        trials["pareto"] = pareto_mask(trials, maximize.metric, minimize.metric)
    files = [out_dir / "trials.parquet", out_dir / "epochs.parquet"]
    trials.to_parquet(files[0], index=False)
    epochs.to_parquet(files[1], index=False)
    title = f"{study.name} ({study.profile} profile)"
    if not epochs.empty:
        files.append(plots.curves(epochs, trials, out_dir / "curves.png", title=title))
    lines = [f"== report: {study.name} ({study.profile} profile), {len(trials)} trial(s) =="]
    if not trials.empty:
        cols = [
            c
            for c in (
                "label",
                "status",
                "epochs_run",
                "stop_reason",
                names.BEST_EPOCH,
                names.BEST_VAL_PSNR,
                names.VAL_LPIPS_PROXY,
            )
            if c in trials
        ]
        if "pareto" in trials:
            cols.append("pareto")
        with pd.option_context("display.width", 160, "display.max_colwidth", 48):
            lines.append(trials[cols].to_string(index=False))
    if study.name == "train-time" and {"size", "batch_size"} <= set(trials):
        files.append(plots.epoch_time_vs_size(trials, out_dir / "epoch_time.png", title=title))
        lines += ["", "seed Exp2-1 table for the data at hand:", train_time_table(trials)]
    if "fraction" in study.search and "fraction" in trials:
        files.append(
            plots.best_vs_param(trials, "fraction", out_dir / "best_vs_fraction.png", title=title)
        )
    if study.cases and "size" in trials and study.name != "train-time":
        files.append(plots.best_vs_param(trials, "size", out_dir / "best_vs_size.png", title=title))
    if "pareto" in trials:
        a, b = study.objectives
        y, x = (a, b) if a.mode == "max" else (b, a)
        files.append(plots.pareto(trials, x.metric, y.metric, out_dir / "pareto.png", title=title))
        front = trials[trials["pareto"]]
        lines += ["", f"Pareto front ({len(front)} of {len(trials)} trials; final-epoch values):"]
        lines.append(front[["label", y.metric, x.metric]].to_string(index=False))
    best = best_trial(trials, study)
    if best:
        lines += [
            "",
            f"best trial {best['trial_id']}: {best['label']}, best val_psnr "
            f"{_fmt(best.get(names.BEST_VAL_PSNR), '.2f')} dB at epoch "
            f"{best.get(names.BEST_EPOCH)}",
        ]
        if best.get("best_checkpoint"):
            lines.append(f"best checkpoint: {best['best_checkpoint']}")
    lines.append(f"report files: {out_dir}")
    return Report(trials=trials, epochs=epochs, files=files, best=best, summary="\n".join(lines))


# ------------------------------------------------------------------------------------------------
def load_records(experiment_dir: str, study: Study) -> list[TrialRecord]:
    """Tune's results in storage -> TrialRecords (best checkpoint by val_psnr)."""
    from ray.tune import ExperimentAnalysis

    from tune.trainable import CASE_KEY, trial_values

    analysis = ExperimentAnalysis(experiment_dir)
    frames_by_id = analysis.trial_dataframes
    varied = [*sorted({k for c in study.cases for k in c}), *study.search]
    records = []
    for trial in analysis.trials:
        df = frames_by_id.get(trial.trial_id, pd.DataFrame())
        history = [] if df.empty else df.to_dict("records")
        values = trial_values(study.config, {k: v for k, v in trial.config.items()})
        params = {k: values.get(k) for k in varied}
        if CASE_KEY in trial.config and not params:
            params = dict(trial.config[CASE_KEY])
        ckpt = None
        try:
            best = analysis.get_best_checkpoint(trial, metric=names.VAL_PSNR, mode="max")
            ckpt = best.path if best is not None else None
        except Exception:  # noqa: BLE001 - a trial with no checkpoint has no best one
            ckpt = None
        records.append(
            TrialRecord(
                trial_id=trial.trial_id,
                status=trial.status,
                params=params,
                history=history,
                best_checkpoint=ckpt,
                max_epochs=int(values.get("epochs", 0)) or None,
            )
        )
    return records


def make_report(
    experiment_dir: str,
    *,
    study: Study,
    tracking_uri: str | None,
    parent_run_id: str | None,
    notes: list[str] | None = None,
) -> Report:
    from tune import parent_run, storage

    if storage.is_remote(experiment_dir):
        out_dir = Path.cwd() / "reports" / experiment_dir.rstrip("/").rsplit("/", 1)[-1]
    else:
        out_dir = Path(experiment_dir) / "report"
    report = build(load_records(experiment_dir, study), study, out_dir)
    if tracking_uri and parent_run_id:
        best = report.best
        varied = [*sorted({k for c in study.cases for k in c}), *study.search]
        parent_run.log_summary(
            tracking_uri,
            parent_run_id,
            params={"trial_id": best.get("trial_id"), **{k: best.get(k) for k in varied}}
            if best
            else {},
            metrics={
                k: best[k]
                for k in (names.BEST_VAL_PSNR, names.VAL_SSIM, names.VAL_LPIPS_PROXY)
                if best and _number(best.get(k)) is not None
            },
            artifacts=report.files,
        )
        report.summary += f"\nlogged to MLflow parent run {parent_run_id}"
    return report


def main(argv: list[str] | None = None) -> int:
    from tune import parent_run, storage
    from tune.studies import StudyError, load_study

    p = argparse.ArgumentParser(prog="python tune/report.py", description=__doc__.split("\n")[0])
    p.add_argument("--study", required=True)
    p.add_argument("--storage", default="ray_results", help="the --storage given to tune/run.py")
    p.add_argument("--run", default=None, help="an experiment dir (default: the latest one)")
    p.add_argument("--experiments", default=str(REPO / "experiments.yaml"))
    p.add_argument("--no-mlflow", action="store_true", help="do not log to the parent run")
    args = p.parse_args(argv)
    root = Path(storage.resolve_storage(args.storage)) / args.study
    if args.run:
        run_dir = Path(args.run).resolve()
    else:
        runs = sorted(root.glob(f"*/{parent_run.PARENT_FILE}"), key=lambda f: f.stat().st_mtime)
        if not runs:
            print(f"error: --study {args.study}: no results under {root}", file=sys.stderr)
            return 2
        run_dir = runs[-1].parent
    info = storage.read_json(str(run_dir / parent_run.PARENT_FILE)) or {}
    try:
        study = load_study(args.experiments, args.study, info.get("profile", "demo"))
    except StudyError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    report = make_report(
        str(run_dir),
        study=study,
        tracking_uri=None if args.no_mlflow else info.get("tracking_uri"),
        parent_run_id=None if args.no_mlflow else info.get("run_id"),
    )
    print(report.summary)
    return 0


def _number(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, int | float):
        return None
    return None if v != v else float(v)  # NaN -> None


def _fmt(v: Any, spec: str) -> str:
    n = _number(v)
    return "n/a" if n is None else format(n, spec)


def _duration(v: Any) -> str:
    n = _number(v)
    if n is None:
        return "n/a"
    return f"{n:.1f} s" if n < 120 else (f"{n / 60:.1f} min" if n < 7200 else f"{n / 3600:.2f} h")


def _short(v: Any) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


if __name__ == "__main__":
    sys.exit(main())
