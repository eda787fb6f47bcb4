"""A study's report: Parquet tables, PNG plots, one HTML page and a printed summary that ends
with the study's answer, all logged to the parent run.

    python tune/report.py --study loss-weights [--run PATH] [--storage ray_results]

Runs automatically at the end of ``tune/run.py``. Reads Tune's results from storage (the latest
invocation of the study unless ``--run`` names one) and the MLflow parent run recorded there.

What it draws and answers comes from the study's ``report: {kind, param}`` (tune/sections.py,
tune/answers.py), never from its name. Outputs (in ``<experiment dir>/report/``):
- ``trials.parquet``: one row per trial (parameters, kept-epoch and final metrics, bicubic
  PSNR, stop reason and detail, best checkpoint, MLflow child run id);
- ``epochs.parquet``: one row per trial-epoch (every reported metric, epoch 0 included);
- ``groups.parquet``: one row per configuration (mean, std and n over seeds, significance);
- ``curves.png`` (every study) and per kind: ``epoch_time.png`` (speed), ``reference.png``
  (reference), ``pareto.png`` (tradeoff), ``best_vs_<param>.png`` (scaling),
  ``divergence.png`` (divergence);
- ``summary.txt`` (the printed summary) and ``report.html`` (everything on one page, with the
  latest sample grids of the best trials when MLflow is given).
The answer is also the parent run's MLflow description (``mlflow.note.content``).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if __name__ == "__main__":
    # `python tune/report.py` puts tune/, not the repo, first on sys.path: import ttsr and tune
    # from this checkout.
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import pandas as pd  # noqa: E402

from ttsr import names  # noqa: E402
from ttsr.tracking import MLFLOW_RUN_KEY  # noqa: E402
from tune.answers import bicubic_verdict  # noqa: E402
from tune.formatting import db, mean_std, number, table_text  # noqa: E402
from tune.groups import GROUP  # noqa: E402
from tune.report_data import ReportData, make_data  # noqa: E402
from tune.studies import Study  # noqa: E402
from tune.trial_frames import (  # noqa: E402
    VS_BICUBIC,
    TrialRecord,
    frames,
    kept,
    objective_column,
    pareto_mask,
)

__all__ = ["Report", "TrialRecord", "build", "frames", "make_report", "pareto_mask"]

REPO = Path(__file__).resolve().parent.parent
NOTE_TAG = "mlflow.note.content"  # MLflow's run description (shown on the run page)


@dataclass
class Report:
    trials: pd.DataFrame
    epochs: pd.DataFrame
    groups: pd.DataFrame = field(default_factory=pd.DataFrame)
    files: list[Path] = field(default_factory=list)
    best: dict[str, Any] = field(default_factory=dict)
    summary: str = ""  # what tune/run.py prints: the details, then the answer (last paragraph)
    answer: str = ""
    details: list[str] = field(default_factory=list)

    def compose(self) -> None:
        self.summary = "\n".join(self.details) + f"\n\nanswer: {self.answer}"


# ------------------------------------------------------------------------------------------------
def best_trial(trials: pd.DataFrame, study: Study) -> dict[str, Any]:
    """Single objective: the best trial on its kept-epoch value (quality) or mean (speed);
    multi-objective: the front's highest-PSNR point (the whole front is in the report)."""
    if trials.empty:
        return {}
    col = objective_column(study.metric)
    df = trials.dropna(subset=[col]) if col in trials else trials.iloc[0:0]
    if study.multi_objective and "pareto" in trials:
        df = df[trials.loc[df.index, "pareto"]]
    if df.empty:
        return {}
    row = df.loc[df[col].idxmax() if study.mode == "max" else df[col].idxmin()]
    return row.to_dict()


def build(
    records: list[TrialRecord],
    study: Study,
    out_dir: Path,
    *,
    notes: list[str] | None = None,
    tracking_uri: str | None = None,
) -> Report:
    """Tables, plots, the HTML page and the summary for one study invocation. ``notes``: what
    the driver wants every reader to know (e.g. random VGG features); ``tracking_uri``: where
    the trials' sample grids are (None: the page has none)."""
    from tune import plots, sections

    trials, epochs = frames(records, scheduler=study.scheduler)
    out_dir.mkdir(parents=True, exist_ok=True)
    keys = list(dict.fromkeys(k for rec in records for k in rec.params))
    data = make_data(trials, epochs, study, param_keys=keys, out_dir=out_dir)
    files = _write_tables(data, out_dir)
    if not epochs.empty:
        curves = out_dir / "curves.png"
        files.append(plots.curves(epochs, trials, curves, title=data.title, x=data.x))
    section = sections.make_section(data)
    files += section.files
    best = best_trial(data.trials, study)
    notes = list(notes or ())
    answer = "\n".join([section.answer, *(f"Note: {n}" for n in notes)])
    details = [
        *overview_lines(data, notes),
        *section.lines,
        *best_lines(best),
        f"report files: {out_dir}",
    ]
    report = Report(trials, epochs, data.groups, files, best, answer=answer, details=details)
    report.compose()
    summary_file = out_dir / "summary.txt"
    summary_file.write_text(report.summary + "\n", encoding="utf-8")
    report.files += [summary_file, _write_page(report, data, section, notes, tracking_uri)]
    return report


def _write_tables(data: ReportData, out_dir: Path) -> list[Path]:
    files = [out_dir / "trials.parquet", out_dir / "epochs.parquet", out_dir / "groups.parquet"]
    data.trials.to_parquet(files[0], index=False)
    data.epochs.to_parquet(files[1], index=False)
    data.groups.to_parquet(files[2], index=False)
    return files


def overview_lines(data: ReportData, notes: list[str]) -> list[str]:
    """The part every report has: notes, the trials, the budget, bicubic, the repeats."""
    t, study = data.trials, data.study
    lines = [f"== report: {study.name} ({study.profile} profile), {len(t)} trial(s) =="]
    lines += [f"note: {n}" for n in notes]
    if t.empty:
        return lines
    cols = [
        "label",
        "status",
        "epochs_run",
        "stop_reason",
        names.BEST_EPOCH,
        names.BEST_VAL_PSNR,
        names.BICUBIC_PSNR,
        VS_BICUBIC,
        *data.objective_columns,
        "pareto",
    ]
    lines.append(table_text(t[[c for c in dict.fromkeys(cols) if c in t]]))
    if data.budget.sentence:
        lines += ["", data.budget.sentence]
    if t[VS_BICUBIC].notna().any():
        lines += ["", "against bicubic (kept epoch):"]
        lines += [f"  {r['label']}: {bicubic_verdict(r[VS_BICUBIC])}" for _, r in t.iterrows()]
    return lines + repeat_lines(data)


def repeat_lines(data: ReportData) -> list[str]:
    """Configurations over seeds: mean ± std (n), against the best one, and the spread."""
    g, study = data.groups, data.study
    main = objective_column(study.metric)
    spread = data.spread.get(main)
    if spread is None:
        lines = ["", f"seed-to-seed spread: single seed: spread unknown (repeats {study.repeats})"]
    else:
        k = int(((g["n_seeds"] >= 2) & (g.get(f"{main}_n", 0) >= 2)).sum())
        others = [
            f"{data.spread[c]:.4g} {c}"
            for c in data.objective_columns
            if c != main and data.spread.get(c) is not None
        ]
        lines = [
            "",
            f"seed-to-seed spread (pooled std over {k} configuration(s) run with >= 2 seeds): "
            f"{spread:.4g} {main}" + "".join(f", {o}" for o in others) + "; a difference "
            "between two configurations' means is significant from two standard errors, "
            "2 x spread x sqrt(1/n_a + 1/n_b) (twice the spread with 2 seeds each)",
        ]
    if g.empty or not (g["n_seeds"] > 1).any():
        return lines
    rows = []
    for _, r in g.iterrows():
        row = {"configuration": r[GROUP], "n": r["n"]}
        for c in dict.fromkeys([names.BEST_VAL_PSNR, *data.objective_columns]):
            if f"{c}_mean" in r:
                row[c] = mean_std(r[f"{c}_mean"], r[f"{c}_std"], r[f"{c}_n"], ".4g")
        row["vs best"] = number(r.get(f"{main}_vs_best"))
        row["significance"] = r.get("significance")
        rows.append(row)
    return lines + ["", "configurations (mean ± std over seeds):", table_text(pd.DataFrame(rows))]


def best_lines(best: dict[str, Any]) -> list[str]:
    if not best:
        return []
    lines = [
        "",
        f"best trial {best['trial_id']}: {best['label']}, best val_psnr "
        f"{db(best.get(names.BEST_VAL_PSNR))} at epoch {best.get(names.BEST_EPOCH)}",
    ]
    if best.get("best_checkpoint"):
        lines.append(f"best checkpoint: {best['best_checkpoint']}")
    return lines


def _write_page(report: Report, data: ReportData, section, notes, tracking_uri) -> Path:
    from tune import html_report
    from tune.sample_grids import latest_test_grids

    study = data.study
    tables = {"trials": _html_trials(data.trials)}
    if not data.groups.empty:
        tables["configurations (over seeds)"] = data.groups
    tables.update(section.tables)
    config = {
        "profile": study.profile,
        "objectives": ", ".join(f"{o.metric} ({o.mode})" for o in study.objectives),
        "report": f"{study.report_kind} {study.report_param or ''}".strip(),
        "repeats": study.repeats,
        "num_samples": study.num_samples,
        "scheduler": study.scheduler,
        "cases": list(study.cases) or "",
        "search": {k: list(d.values) for k, d in study.search.items()} or "",
        **{f"config.{k}": v for k, v in sorted(study.config.items())},
    }
    with tempfile.TemporaryDirectory() as tmp:
        grids = []
        if tracking_uri:
            grids = latest_test_grids(tracking_uri, _runs_best_first(data.trials), Path(tmp))
        return html_report.write_html(
            data.out_dir / "report.html",
            title=data.title,
            answer=report.answer,
            notes=notes,
            description=study.description,
            summary=report.summary,
            tables=tables,
            plots=[p for p in report.files if p.suffix == ".png"],
            grids=grids,
            config=config,
        )


def _html_trials(trials: pd.DataFrame) -> pd.DataFrame:
    drop = [c for c in trials if c.startswith("loss_") or trials[c].isna().all()]
    return trials.drop(columns=drop)


def _runs_best_first(trials: pd.DataFrame) -> list[tuple[str, str]]:
    if trials.empty or MLFLOW_RUN_KEY not in trials:
        return []
    order = trials.sort_values(names.BEST_VAL_PSNR, ascending=False, na_position="last")
    return [(r["label"], r[MLFLOW_RUN_KEY]) for _, r in order.iterrows() if r[MLFLOW_RUN_KEY]]


# ------------------------------------------------------------------------------------------------
def load_records(experiment_dir: str, study: Study) -> list[TrialRecord]:
    """Tune's results in storage -> TrialRecords (best checkpoint by val_psnr)."""
    from ray.tune import ExperimentAnalysis

    from tune.trainable import CASE_KEY, trial_values

    analysis = ExperimentAnalysis(experiment_dir)
    frames_by_id = analysis.trial_dataframes
    records = []
    for trial in analysis.trials:
        df = frames_by_id.get(trial.trial_id, pd.DataFrame())
        history = [] if df.empty else df.to_dict("records")
        values = trial_values(study.config, {k: v for k, v in trial.config.items()})
        params = {k: values.get(k) for k in study.varied_keys}
        if CASE_KEY in trial.config and not params:
            params = dict(trial.config[CASE_KEY])
        if study.repeats > 1:  # repeat i of a configuration runs with the study's seed + i
            params["seed"] = values.get("seed", 0)
        ckpt = None
        try:
            watched = study.config.get("early_stop_metric", names.VAL_PSNR)  # as the loop's
            best = analysis.get_best_checkpoint(trial, metric=watched, mode="max")
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
    """The report of one invocation; logged to the parent run (files under ``report/``, the
    best trial's values, the answer as the run's description) when one is given."""
    from tune import storage

    if storage.is_remote(experiment_dir):
        out_dir = Path.cwd() / "reports" / experiment_dir.rstrip("/").rsplit("/", 1)[-1]
    else:
        out_dir = Path(experiment_dir) / "report"
    records = load_records(experiment_dir, study)
    report = build(records, study, out_dir, notes=notes, tracking_uri=tracking_uri)
    if tracking_uri and parent_run_id:
        log_to_parent(report, study, tracking_uri, parent_run_id)
    return report


def log_to_parent(report: Report, study: Study, tracking_uri: str, run_id: str) -> None:
    """Report files, the best trial and the answer (as the description) on the parent run."""
    from mlflow.tracking import MlflowClient

    from tune import parent_run

    best = report.best
    params = {"trial_id": best.get("trial_id"), **{k: best.get(k) for k in study.varied_keys}}
    values = {
        names.VAL_PSNR: best.get(names.BEST_VAL_PSNR),
        names.VAL_SSIM: best.get(kept(names.VAL_SSIM)),
        names.VAL_LPIPS_PROXY: best.get(kept(names.VAL_LPIPS_PROXY)),
        names.BICUBIC_PSNR: best.get(names.BICUBIC_PSNR),
    }
    parent_run.log_summary(
        tracking_uri,
        run_id,
        params=params if best else {},
        metrics={k: float(v) for k, v in values.items() if number(v) is not None},
        artifacts=report.files,
    )
    note = f"{report.answer}\n\n(full report: artifacts report/report.html)"
    MlflowClient(tracking_uri).set_tag(run_id, NOTE_TAG, note)
    report.details.append(f"logged to MLflow parent run {run_id}")
    report.compose()


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
        notes=info.get("notes"),
    )
    print(report.summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
