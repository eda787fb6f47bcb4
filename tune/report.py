"""A study's report, logged to the parent run; runs at the end of ``tune/run.py``:

    python tune/report.py --study loss-weights [--run PATH] [--storage ray_results]

It reads Tune's results (the study's latest invocation unless ``--run`` names one); what it draws
and answers comes from the study's ``report: {kind, param}``, never from its name. Outputs in
``<experiment dir>/report/``: ``trials.parquet`` (one row per trial: parameters, kept-epoch and
final metrics, bicubic PSNR, stop reason and detail, best checkpoint, MLflow child run id),
``epochs.parquet`` (one row per trial-epoch, epoch 0 included), ``groups.parquet`` (one row per
configuration: mean, std and n over seeds, significance), ``curves.png`` and the kind's plot
(``epoch_time.png``, ``reference.png``, ``pareto.png``, ``best_vs_<param>.png`` or
``divergence.png``), ``summary.txt`` (the printed summary) and ``report.html`` (everything on one
page). The answer is also the parent run's MLflow description (``mlflow.note.content``).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if __name__ == "__main__":
    # `python tune/report.py` puts tune/, not the repo, first on sys.path
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import pandas as pd  # noqa: E402

from ttsr import names  # noqa: E402
from tune.execution.storage import MLFLOW_RUN_KEY  # noqa: E402
from tune.reporting.data import (  # noqa: E402
    FAST_PATHS,
    VS_BICUBIC,
    ReportData,
    TrialRecord,
    frames,
    kept,
    make_data,
    objective_column,
    pareto_mask,
)
from tune.reporting.formatting import db, fmt, mean_std, number, table_text  # noqa: E402
from tune.reporting.groups import GROUP, best_index, complete  # noqa: E402
from tune.study.studies import Study  # noqa: E402

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
    answer: str = ""
    details: list[str] = field(default_factory=list)

    @property
    def summary(self) -> str:
        """What tune/run.py prints: the details, then the answer (last paragraph)."""
        return "\n".join(self.details) + f"\n\nanswer: {self.answer}"


def best_trial(data: ReportData) -> dict[str, Any]:
    """The trial the study keeps (its model is registered): the best seed of the best
    configuration. Best configuration: the highest (or lowest) mean of the main objective over
    its seeds, on the Pareto front of the two objectives' means when there are two; best seed:
    the configuration's trial with the best value. A speed study keeps none (its quality is not
    what it measures)."""
    study, trials = data.study, data.trials
    col = objective_column(study.metric)
    if trials.empty or study.report_kind == "speed" or col not in trials or GROUP not in trials:
        return {}
    g = complete(data.groups, f"{col}_mean")
    if study.multi_objective and "pareto" in g:
        g = g[g["pareto"].fillna(False).astype(bool)]
    if g.empty:
        return {}
    group = g.loc[best_index(g[f"{col}_mean"], study.mode)]
    members = trials[trials[GROUP] == group[GROUP]].dropna(subset=[col])
    if members.empty:
        return {}
    return members.loc[best_index(members[col], study.mode)].to_dict()


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
    from tune.reporting import kinds, plots

    trials, epochs = frames(records, scheduler=study.scheduler)
    out_dir.mkdir(parents=True, exist_ok=True)
    keys = list(dict.fromkeys(k for rec in records for k in rec.params))
    data = make_data(trials, epochs, study, param_keys=keys, out_dir=out_dir)
    files = []
    for name, table in (("trials", data.trials), ("epochs", data.epochs), ("groups", data.groups)):
        files.append(out_dir / f"{name}.parquet")
        table.to_parquet(files[-1], index=False)
    if not epochs.empty:
        curves = out_dir / "curves.png"
        files.append(plots.curves(epochs, trials, curves, title=data.title, x=data.x))
    section = kinds.make_section(data)
    files += section.files
    best = best_trial(data)
    notes = [*(notes or ()), *fallback_notes(trials)]
    section.answer = " ".join(filter(None, [section.answer, kinds.diverged_note(data)]))
    answer = "\n".join([section.answer, *(f"Note: {n}" for n in notes)])
    details = [
        *overview_lines(data, notes),
        *section.lines,
        *best_lines(best, tracking_uri),
        f"report files: {out_dir}",
    ]
    report = Report(trials, epochs, data.groups, files, best, answer=answer, details=details)
    summary_file = out_dir / "summary.txt"
    summary_file.write_text(report.summary + "\n", encoding="utf-8")
    report.files += [summary_file, _write_page(report, data, section, notes, tracking_uri)]
    return report


def fallback_notes(trials: pd.DataFrame) -> list[str]:
    """One note per distinct fast-path fallback (a path the run's self-test switched off), with
    the trials it concerns; none when every trial kept its fast paths."""
    if trials.empty or FAST_PATHS not in trials:
        return []
    found: dict[str, list[str]] = {}
    for _, r in trials.iterrows():
        value = r[FAST_PATHS] if isinstance(r[FAST_PATHS], str) else ""
        if "off:" in value:
            found.setdefault(value.split("off:", 1)[1].strip(), []).append(r["label"])
    return [
        f"{', '.join(who) if len(who) < len(trials) else 'every trial'} ran without a fast "
        f"path its self-test switched off: {off}"
        for off, who in found.items()
    ]


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
    if t[VS_BICUBIC].notna().any() and study.report_kind != "speed":  # speed: not scored
        from tune.reporting.kinds import bicubic_verdict  # kinds imports matplotlib

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


def best_lines(best: dict[str, Any], tracking_uri: str | None = None) -> list[str]:
    """The kept model, its checkpoint and (tracked) the command that trains it again."""
    if not best:
        return []
    lines = [
        "",
        f"kept model: {best['label']} (trial {best['trial_id']}; the best seed of the best "
        f"configuration), val_psnr {db(best.get(names.BEST_VAL_PSNR))} at its kept epoch "
        f"{best.get(names.BEST_EPOCH)}",
    ]
    if best.get("best_checkpoint"):
        lines.append(f"best checkpoint: {best['best_checkpoint']}")
    if tracking_uri and best.get(MLFLOW_RUN_KEY):
        lines.append(
            f"train it again: python -m ttsr.train --from-run runs:/{best[MLFLOW_RUN_KEY]} "
            f"--mlflow-uri {tracking_uri}"
        )
    return lines


def _write_page(report: Report, data: ReportData, section, notes, tracking_uri) -> Path:
    from tune.reporting import html_report

    study = data.study
    t = data.trials
    empty = [c for c in t if c.startswith("loss_") or t[c].isna().all()]
    folded = {"all trials": t.drop(columns=empty), **section.tables}
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
    best = report.best
    with tempfile.TemporaryDirectory() as tmp:
        grids = []
        if tracking_uri and best.get(MLFLOW_RUN_KEY):
            kept_epoch = number(best.get(names.BEST_EPOCH))
            grids = html_report.kept_trial_grids(
                tracking_uri,
                best[MLFLOW_RUN_KEY],
                label=best["label"],
                kept_epoch=None if kept_epoch is None else int(kept_epoch),
                dest=Path(tmp),
            )
        return html_report.write_html(
            data.out_dir / "report.html",
            title=data.title,
            answer=section.answer,
            notes=notes,
            description=study.description,
            summary=report.summary,
            overview=configuration_table(data),
            tables=folded,
            plots=[p for p in report.files if p.suffix == ".png"],
            grids=grids,
            config=config,
        )


COLUMN_NAMES = {  # short: the table fits the page (the caption says what they are)
    names.BEST_VAL_PSNR: "PSNR Y (dB)",
    names.kept(names.VAL_PSNR_RGB_C4): "PSNR RGB-c4 (dB)",
}


def configuration_table(data: ReportData) -> pd.DataFrame:
    """What differs between the configurations, one row each: the swept values, the seeds, each
    objective at the kept epoch (mean ± std over seeds), the margin over bicubic, how the
    trials stopped, and whether the configuration differs from the best one significantly."""
    g, t = data.groups, data.trials
    if g.empty:
        return pd.DataFrame()
    psnrs = [names.BEST_VAL_PSNR, names.kept(names.VAL_PSNR_RGB_C4)]  # both conventions
    objectives = dict.fromkeys([*psnrs, *data.objective_columns])
    rows = []
    for _, r in g.iterrows():
        members = t[t[GROUP] == r[GROUP]]
        row = {"configuration": r[GROUP], "seeds": int(r["n"])}
        for c in objectives:
            if f"{c}_mean" in r:
                spec = ".2f" if "psnr" in c else ".4g"
                std = number(r[f"{c}_std"])
                head = COLUMN_NAMES.get(c, c.removeprefix("best_"))
                row[head] = fmt(r[f"{c}_mean"], spec) + ("" if std is None else f" ± {std:{spec}}")
        if f"{VS_BICUBIC}_mean" in r:
            row["vs bicubic"] = f"{number(r[f'{VS_BICUBIC}_mean']) or 0:+.2f} dB"
        stops = members["stop_reason"].fillna("unknown").value_counts()
        row["stopped by"] = ", ".join(f"{k} ×{v}" if v > 1 else k for k, v in stops.items())
        if r.get("significance"):
            row["vs best"] = r["significance"]
        rows.append(row)
    return pd.DataFrame(rows)


def load_records(experiment_dir: str, study: Study) -> list[TrialRecord]:
    """Tune's results in storage -> TrialRecords (best checkpoint by val_psnr)."""
    from ray.tune import ExperimentAnalysis

    from tune.execution.trainable import CASE_KEY, trial_values

    analysis = ExperimentAnalysis(experiment_dir)
    frames_by_id = analysis.trial_dataframes
    records = []
    for trial in analysis.trials:
        df = frames_by_id.get(trial.trial_id, pd.DataFrame())
        history = [] if df.empty else df.to_dict("records")
        values = trial_values(study.config, dict(trial.config))
        params = {k: values.get(k) for k in study.varied_keys}
        if CASE_KEY in trial.config and not params:
            params = dict(trial.config[CASE_KEY])
        if study.repeats > 1:  # repeat i of a configuration runs with the study's seed + i
            params["seed"] = values.get("seed", 0)
        watched = study.config.get("early_stop_metric", names.VAL_PSNR)  # as the loop's
        try:
            best = analysis.get_best_checkpoint(trial, metric=watched, mode="max")
        except Exception:  # noqa: BLE001 - a trial with no checkpoint has no best one
            best = None
        records.append(
            TrialRecord(
                trial_id=trial.trial_id,
                status=trial.status,
                params=params,
                history=history,
                best_checkpoint=best.path if best is not None else None,
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
    from tune.execution import storage

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

    from tune.execution import parent_run

    client = MlflowClient(tracking_uri)
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
    experiment = client.get_run(run_id).info.experiment_id
    link = parent_run.comparison_url(tracking_uri, experiment, run_id)
    note = (
        f"{report.answer}\n\nThe trials grouped by configuration (one row per configuration, "
        f"its mean over seeds; open a row for each seed): {link}\n\n"
        "Full report: artifacts report/report.html"
    )
    client.set_tag(run_id, NOTE_TAG, note)
    report.details.append(f"logged to MLflow parent run {run_id}")


def main(argv: list[str] | None = None) -> int:
    from tune.execution import storage
    from tune.study.studies import StudyError, load_study

    p = argparse.ArgumentParser(prog="python tune/report.py", description=__doc__.split("\n")[0])
    p.add_argument("--study", required=True)
    p.add_argument("--storage", default="ray_results", help="the --storage given to tune/run.py")
    p.add_argument("--run", default=None, help="an experiment dir (default: the latest one)")
    p.add_argument("--experiments", default=str(REPO / "experiments.yaml"))
    p.add_argument("--no-mlflow", action="store_true", help="do not log to the parent run")
    args = p.parse_args(argv)
    root = Path(storage.resolve_storage(args.storage)) / args.study
    run_dir = Path(args.run).resolve() if args.run else storage.latest_invocation(root)
    if run_dir is None:
        print(f"error: --study {args.study}: no results under {root}", file=sys.stderr)
        return 2
    info = storage.read_json(str(run_dir / storage.PARENT_FILE)) or {}
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
