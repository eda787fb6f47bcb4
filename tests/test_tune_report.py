"""The report from synthetic trial histories: tables, Pareto front, plots, train-time table."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pandas as pd

from ttsr import names
from tune.report import TrialRecord, build, frames, pareto_mask
from tune.study.studies import load_study

REPO = Path(__file__).resolve().parent.parent
SHIPPED = REPO / "experiments.yaml"


def _history(psnrs, perceptual=None, stop=None, **extra):
    rows = []
    for i, p in enumerate(psnrs, start=1):
        row = {names.EPOCH: i, names.VAL_PSNR: p, names.VAL_SSIM: p / 40, **extra}
        if perceptual is not None:
            row[names.VAL_LPIPS_PROXY] = perceptual
        rows.append(row)
    if stop:
        rows[-1][names.STOP_REASON] = stop
    return rows


def test_frames_best_epoch_and_stop_reasons():
    records = [
        TrialRecord("a", "TERMINATED", {"x": 1}, _history([20, 24, 23], stop="patience"), None, 5),
        TrialRecord("b", "TERMINATED", {"x": 2}, _history([19]), None, 5),  # stopped by ASHA
        TrialRecord("c", "ERROR", {"x": 3}, _history([18, 19]), None, 5),
        TrialRecord("d", "TERMINATED", {"x": 4}, _history([21, 22]), None, 2),
    ]
    trials, epochs = frames(records, scheduler="asha")
    assert len(epochs) == 3 + 1 + 2 + 2
    t = trials.set_index("trial_id")
    assert t.loc["a", names.BEST_EPOCH] == 2 and t.loc["a", names.BEST_VAL_PSNR] == 24
    assert t.loc["a", "stop_reason"] == "patience"
    assert t.loc["b", "stop_reason"] == "asha"
    assert t.loc["c", "stop_reason"] == "error"
    assert t.loc["d", "stop_reason"] == names.STOP_MAX_EPOCHS
    assert t.loc["a", names.VAL_PSNR] == 23  # final-epoch value kept separately


def test_pareto_mask():
    df = pd.DataFrame({"p": [30, 29, 28, 27, 29], "q": [0.5, 0.3, 0.4, 0.1, 0.3]})
    # row 2 is beaten by row 1 (higher p, lower q); row 4 ties row 1 (not dominated)
    assert pareto_mask(df, "p", "q").tolist() == [True, True, False, True, True]


def test_loss_weights_report_writes_parquet_and_pareto_plot(tmp_path):
    study = load_study(SHIPPED, "loss-weights", "demo")
    points = [
        (0.0, 0.0, 0.0, 25.0, 0.40),
        (0.01, 0.0, 0.0, 24.0, 0.30),
        (0.01, 0.01, 0.0, 23.0, 0.35),
        (0.001, 0.0, 0.01, 22.0, 0.20),
        (0.0, 0.01, 0.01, 21.0, 0.45),
    ]
    records = [
        TrialRecord(
            f"t{i}",
            "TERMINATED",
            {"per_w": a, "tpl_w": b, "adv_w": c},
            _history([p - 1, p], perceptual=q),
            f"/ckpt/{i}",
            3,
        )
        for i, (a, b, c, p, q) in enumerate(points)
    ]
    report = build(records, study, tmp_path / "report")
    trials = pd.read_parquet(tmp_path / "report" / "trials.parquet")
    epochs = pd.read_parquet(tmp_path / "report" / "epochs.parquet")
    assert len(trials) == 5 and len(epochs) == 10
    assert trials.set_index("trial_id")["pareto"].to_dict() == {
        "t0": True,
        "t1": True,
        "t2": False,
        "t3": True,
        "t4": False,
    }
    names_out = {p.name for p in report.files}
    assert {"curves.png", "pareto.png"} <= names_out
    assert all(p.stat().st_size > 5000 for p in report.files if p.suffix == ".png")
    assert "Pareto front (3 of 5" in report.summary
    assert report.best["trial_id"] == "t0"


def test_train_time_report_prints_seed_table(tmp_path):
    study = load_study(SHIPPED, "train-time", "seed")
    records = [
        TrialRecord(
            f"t{s}",
            "TERMINATED",
            {"size": s, "batch_size": b},
            _history(
                [20.0],
                **{
                    names.EPOCH_SECONDS: sec,
                    names.TRAIN_IMAGES_PER_SECOND: 16000 / sec,
                    names.PEAK_GPU_MEMORY_GIB: mem,
                },
            ),
            None,
            1,
        )
        for s, b, sec, mem in [
            (160, 8, 1800, 2.5),
            (256, 4, 3600, 3.1),
            (384, 1, 7200, 4.0),
            (512, 1, 14400, 5.5),
        ]
    ]
    report = build(records, study, tmp_path / "r")
    assert "epoch_time.png" in {p.name for p in report.files}
    table = report.summary.split("seed Exp2-1 table")[1]
    assert "   160      8     30.0 min" in table
    assert "512      1       4.00 h" in table and "5.50 GiB" in table


def test_fraction_and_resolution_plots(tmp_path):
    frac = load_study(SHIPPED, "dataset-fraction", "demo")
    records = [
        TrialRecord(f"f{f}", "TERMINATED", {"fraction": f}, _history([20 + f, 21 + f]), None, 3)
        for f in (0.125, 0.25, 0.5, 1.0)
    ]
    files = {p.name for p in build(records, frac, tmp_path / "f").files}
    assert "best_vs_fraction.png" in files
    res = load_study(SHIPPED, "resolution", "demo")
    records = [
        TrialRecord(f"s{s}", "TERMINATED", {"size": s, "batch_size": 2}, _history([20.0]), None, 3)
        for s in (32, 48, 64)
    ]
    assert "best_vs_size.png" in {p.name for p in build(records, res, tmp_path / "s").files}


# ------------------------------------------------------------------------------------------------
# Every report kind from constructed trials: plots, tables and the computed answer.
def _run(psnrs, *, steps=10, batch=4, bicubic=22.0, stop=None, best=None, detail="", **series):
    """A history from epoch 0 (validation before training): step, images_seen and bicubic per
    epoch; ``series``: metric -> one value per epoch; the last row carries the stop fields."""
    rows = []
    for e, p in enumerate(psnrs):
        rows.append(
            {
                names.EPOCH: e,
                names.STEP: e * steps,
                names.IMAGES_SEEN: e * steps * batch,
                names.VAL_PSNR: p,
                names.VAL_SSIM: None if p is None else p / 40,
                names.BICUBIC_PSNR: bicubic,
                **{m: v[e] for m, v in series.items()},
            }
        )
    if stop:
        scored = [(p, e) for e, p in enumerate(psnrs) if p is not None]
        rows[-1][names.STOP_REASON] = stop
        rows[-1][names.BEST_EPOCH] = max(scored)[1] if best is None else best
        rows[-1][names.STOP_DETAIL] = detail
    return rows


def _answer_is_last(report):
    last = report.summary.split("\n\n")[-1]
    assert last == f"answer: {report.answer}", last
    return report.answer


def test_speed_answer_and_plot(tmp_path):
    study = load_study(SHIPPED, "train-time", "demo")
    cases = [(32, 8, 1.0, 36.0), (48, 4, 1.6, 22.5), (64, 1, 2.4, 15.0), (96, 1, 3.8, 9.5)]
    records = [
        TrialRecord(
            f"t{s}",
            "TERMINATED",
            {"size": s, "batch_size": b},
            _run(
                [14.0, 15.0],
                stop="max_epochs",
                **{
                    names.EPOCH_SECONDS: [0.3, sec],  # epoch 0 only validates: not averaged in
                    names.TRAIN_IMAGES_PER_SECOND: [0.0, ips],
                    names.PEAK_GPU_MEMORY_GIB: [0.0, 0.0],
                },
            ),
        )
        for s, b, sec, ips in cases
    ]
    report = build(records, study, tmp_path / "r")
    assert "epoch_time.png" in {p.name for p in report.files}
    answer = _answer_is_last(report)
    assert answer.startswith("Epoch time grows x3.8 from 32 to 96 px (1.0 s to 3.8 s per epoch")
    assert "batch_size 8 to 1" in answer
    assert "throughput falls from 36.0 to 9.5 train images/s" in answer
    assert "peak GPU memory not measured (CPU)" in answer
    assert "single seed: spread unknown" in answer
    table = report.summary.split("seed Exp2-1 table")[1]
    assert "    32      8        1.0 s     36.0  n/a (cpu)" in table


def _reference_study():
    study = load_study(SHIPPED, "ref-is-gt", "demo")
    config = {**study.config, "ref_mode": "gt", "val_ref_modes": ["other"]}
    return replace(study, config={**config, "early_stop_metric": "val_psnr"})


def test_reference_answer_gap_peaks_and_plot(tmp_path):
    own = [18, 20, 21.5, 22.5, 23.5, 24.3, 25.1, 24.9, 24.8, 24.7]  # peak at epoch 6
    other = [17, 19, 21, 21.8, 22.6, 22.4, 22.0, 21.5, 21.0, 20.8]  # peak at epoch 4
    history = _run(own, bicubic=24.8, stop="patience", **{"val_psnr_other": other})
    report = build([TrialRecord("a", "TERMINATED", {}, history)], _reference_study(), tmp_path)
    assert "reference.png" in {p.name for p in report.files}
    answer = _answer_is_last(report)
    assert answer.startswith(
        "Peak at epoch 6 with ground-truth references, epoch 4 with unseen references; "
        "stopped at epoch 9 (patience, watching val_psnr); kept epoch 6."
    ), answer
    assert (
        "With unseen references the model is 3.10 dB below its ground-truth-reference quality "
        "and 2.80 dB below bicubic (24.80 dB): it copies."
    ) in answer
    trial = report.trials.iloc[0]
    assert trial["best_val_psnr_other"] == 22.0 and trial[names.BEST_EPOCH] == 6
    assert "gap other" in report.summary and "peak epoch other" in report.summary


def _loss_weights_repeats():
    study = replace(load_study(SHIPPED, "loss-weights", "demo"), repeats=2)
    configs = {  # (per_w, tpl_w, adv_w): ((psnr seed 0, seed 1), (perceptual seed 0, seed 1))
        (0.0, 0.0, 0.0): ((25.0, 25.2), (0.40, 0.42)),
        (0.01, 0.0, 0.0): ((24.0, 24.2), (0.30, 0.32)),
        (0.0, 0.01, 0.0): ((25.05, 25.25), (0.405, 0.425)),
        (0.0, 0.0, 0.01): ((22.0, 22.4), (0.20, 0.22)),
    }
    records = []
    for (a, b, c), (psnrs, percs) in configs.items():
        for seed in (0, 1):
            p, q = psnrs[seed], percs[seed]
            records.append(
                TrialRecord(
                    f"w{a}-{b}-{c}-s{seed}",
                    "TERMINATED",
                    {"per_w": a, "tpl_w": b, "adv_w": c, "seed": seed},
                    _run(
                        [12.0, p - 1, p],
                        bicubic=22.5,
                        stop="max_epochs",
                        **{names.VAL_LPIPS_PROXY: [0.9, q + 0.1, q]},
                    ),  # fmt: skip
                )
            )
    return study, records


def test_repeats_give_mean_spread_and_significance(tmp_path):
    study, records = _loss_weights_repeats()
    report = build(records, study, tmp_path / "r")
    groups = pd.read_parquet(tmp_path / "r" / "groups.parquet").set_index("group")
    assert len(groups) == 4 and (groups["n"] == 2).all() and (groups["n_seeds"] == 2).all()
    rec = groups.loc["per_w=0, tpl_w=0, adv_w=0"]
    assert abs(rec["best_val_psnr_mean"] - 25.1) < 1e-9
    assert abs(rec["best_val_psnr_std"] - 0.2 / 2**0.5) < 1e-9
    # 0.05 dB between tpl_w=0.01 (best) and reconstruction only is below two standard errors
    # (2 x ~0.19 dB spread x sqrt(1/2 + 1/2))
    assert groups["significance"].to_dict() == {
        "per_w=0, tpl_w=0, adv_w=0": "not significant",
        "per_w=0.01, tpl_w=0, adv_w=0": "significant",
        "per_w=0, tpl_w=0.01, adv_w=0": "best",
        "per_w=0, tpl_w=0, adv_w=0.01": "significant",
    }
    pooled = ((3 * 0.02 + 0.08) / 4) ** 0.5  # variances 0.02 (three configs) and 0.08, n - 1 = 1
    assert f"{pooled:.4g} best_val_psnr" in report.summary
    answer = _answer_is_last(report)
    assert answer.startswith(
        "Against reconstruction only (25.10 dB, val_perceptual 0.4100, n=2; it beats bicubic by "
        "2.60 dB): adv_w=0.01 trades 2.90 dB PSNR for 48.8% lower val_perceptual (val_perceptual "
        "0.2100 vs 0.4100; both beyond two standard errors of the seed spread); per_w=0.01 trades "
        "1.00 dB PSNR for 24.4% lower val_perceptual (val_perceptual 0.3100 vs 0.4100; both "
        "beyond two standard errors of the seed spread); tpl_w=0.01 gains 0.05 dB PSNR at 1.2% "
        "higher val_perceptual (val_perceptual 0.4150 vs 0.4100; both within two standard errors "
        "of the seed spread: not significant)."
    ), answer
    assert "Pareto front over configuration means (4 of 4 configurations)" in report.summary


def test_single_seed_says_spread_unknown(tmp_path):
    study, records = _loss_weights_repeats()
    records = [r for r in records if r.params["seed"] == 0]
    for r in records:
        del r.params["seed"]
    report = build(records, replace(study, repeats=1), tmp_path)
    assert "seed-to-seed spread: single seed: spread unknown (repeats 1)" in report.summary
    assert "; single seed: spread unknown)" in report.answer
    groups = pd.read_parquet(tmp_path / "groups.parquet")
    assert set(groups["significance"]) == {"best", "spread unknown"}


def _fraction_records(*, budget: bool):
    records = []
    for f, p in ((0.125, 24.1), (0.25, 24.9), (0.5, 25.6), (1.0, 26.0)):
        steps = 180 if budget else int(240 * f)  # per validation round
        history = _run([20.0, p - 1, p - 0.5, p], steps=steps, bicubic=25.8, stop="max_epochs")
        records.append(TrialRecord(f"f{f}", "TERMINATED", {"fraction": f}, history))
    return records


def _fraction_study(**config):
    """dataset-fraction with its budget and rounds set here, whatever the shipped file says."""
    study = load_study(SHIPPED, "dataset-fraction", "demo")
    fixed = {k: v for k, v in study.config.items() if k not in ("budget_steps", "budget_images")}
    return replace(study, config={**fixed, "batch_size": 4, **config})


def test_scaling_with_a_budget_states_it_and_answers(tmp_path):
    study = _fraction_study(budget_steps=540, epochs=3)
    report = build(_fraction_records(budget=True), study, tmp_path)
    assert "best_vs_fraction.png" in {p.name for p in report.files}
    assert (
        "Budget: 540 optimiser steps per trial (budget_steps), validated in 3 rounds; every "
        "trial made 540 optimiser steps (2,160 images)."
    ) in report.summary
    answer = _answer_is_last(report)
    assert answer.startswith(
        "At 540 optimiser steps each, best PSNR rises from 24.10 dB with 1/8 of the data to "
        "26.00 dB with all of the data (bicubic 25.80 dB)"
    ), answer
    assert "beats bicubic at 1 of 4 settings (not with 1/8 of the data, with 1/4" in answer


def test_scaling_without_a_budget_says_the_steps_differ(tmp_path):
    report = build(_fraction_records(budget=False), _fraction_study(epochs=3), tmp_path)
    assert (
        "No step budget (epochs limit the trials): an epoch is 30 to 240 optimiser steps "
        "depending on the trial and the trials made 90 to 720 optimiser steps (360 to 2,880 "
        "images), so they differ in training length"
    ) in report.summary
    assert report.answer.startswith("With 90 to 720 optimiser steps (no budget), best PSNR rises")


def test_divergence_answer_names_each_signal_and_kept_epoch(tmp_path):
    study = load_study(SHIPPED, "inpainting", "demo")
    white = (
        "whitening: 35.0% of the pixels inside the box are white (baseline 1.0%: 1.0% at "
        "epoch 0, 0.5% in the targets) at epoch 3"
    )
    spike = "loss spike at step 37: 912.3 is 450x the running median 2.027 (spike_factor 20)"
    mask, out = names.VAL_PSNR_MASK, names.VAL_PSNR_OUTSIDE
    share, share_box = names.VAL_WHITE_SHARE, names.VAL_WHITE_SHARE_MASK
    records = [
        TrialRecord("a", "TERMINATED", {}, _run(
            [15, 20, 22.1, 16.0], bicubic=21.0, stop="diverged", detail=white,
            **{mask: [12, 16, 18.0, 9], out: [16, 22, 24.0, 19],
               share: [0.005, 0.006, 0.007, 0.12], share_box: [0.01, 0.01, 0.02, 0.35]})),
        TrialRecord("b", "TERMINATED", {}, _run(
            [15, 19.5, None], bicubic=21.0, stop="diverged", detail=f"{spike} (epoch 2)",
            **{mask: [12, 15, None], out: [16, 21, None], share: [0.005, 0.005, None],
               share_box: [0.01, 0.01, None]})),
        TrialRecord("c", "TERMINATED", {}, _run(
            [15, 19, 20.5, 20.4, 20.3], bicubic=21.0, stop="patience",
            **{mask: [12] * 5, out: [16] * 5, share: [0.0] * 5, share_box: [0.0] * 5})),
    ]  # fmt: skip
    report = build(records, study, tmp_path)
    assert "divergence.png" in {p.name for p in report.files}
    answer = _answer_is_last(report)
    assert answer.startswith("2 of 3 trials diverged (white pixels: 1, loss spike: 1).")
    assert (
        f"a: white pixels stopped it at epoch 3 ({white}); kept epoch 2: 22.10 dB (box 18.00 dB, "
        "outside 24.00 dB), 0.7% white pixels; it beats bicubic by 1.10 dB."
    ) in answer
    assert "b: loss spike stopped it at epoch 2" in answer and "kept epoch 1: 19.50 dB" in answer
    assert "it does NOT beat bicubic (1.50 dB below)" in answer
    assert "c: no divergence signal fired; stopped at epoch 4 (patience); kept epoch 2" in answer
    stops = report.summary.split("what stopped each trial:")[1]
    assert "white pixels" in stops and "loss spike" in stops


def test_bicubic_column_verdicts_and_baseline_line(tmp_path, monkeypatch):
    from tune.reporting import plots

    drawn = []

    def spy(ax, trials, colours=None):
        plots_bicubic(ax, trials, colours)
        drawn.append([(ln.get_label(), ln.get_linestyle()) for ln in ax.get_lines()])

    plots_bicubic = plots.bicubic_baseline
    monkeypatch.setattr(plots, "bicubic_baseline", spy)
    records = [
        TrialRecord("a", "TERMINATED", {"fraction": 1.0}, _run([20, 23.5], bicubic=22.5)),
        TrialRecord("b", "TERMINATED", {"fraction": 0.5}, _run([20, 21.0], bicubic=22.5)),
    ]
    report = build(records, load_study(SHIPPED, "dataset-fraction", "demo"), tmp_path)
    trials = pd.read_parquet(tmp_path / "trials.parquet").set_index("trial_id")
    assert trials.loc["a", names.BICUBIC_PSNR] == 22.5
    assert trials.loc["a", "vs_bicubic_db"] == 1.0 and trials.loc["b", "vs_bicubic_db"] == -1.5
    assert "fraction=1: beats bicubic by 1.00 dB" in report.summary
    assert "fraction=0.5: does NOT beat bicubic (1.50 dB below)" in report.summary
    assert drawn and ("bicubic 22.50 dB", "--") in drawn[0]  # curves.png's PSNR panel


def test_html_page_has_answer_notes_tables_and_images(tmp_path):
    import base64
    import html

    study, records = _loss_weights_repeats()
    note = "VGG19 ImageNet weights were not found: RANDOM features"
    report = build(records, study, tmp_path, notes=[note])
    assert f"Note: {note}" in report.answer and f"note: {note}" in report.summary
    page = (tmp_path / "report.html").read_text()
    assert tmp_path / "report.html" in report.files and tmp_path / "summary.txt" in report.files
    assert html.escape(report.answer.splitlines()[0]) in page and html.escape(note) in page
    assert html.escape(study.description) in page and "config.rec_w" in page
    pngs = [p for p in report.files if p.suffix == ".png"]
    images = page.split("data:image/png;base64,")[1:]
    assert len(images) == len(pngs) >= 2
    assert base64.b64decode(images[0].split("'")[0])[:8] == b"\x89PNG\r\n\x1a\n"
    assert "<table" in page and "Pareto front (configuration means)" in page


def test_make_report_logs_files_and_sets_the_description(tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    from tune import report as report_module

    uri = f"sqlite:///{tmp_path}/m.db"
    client = MlflowClient(uri)
    exp = client.create_experiment("loss-weights", artifact_location=str(tmp_path / "art"))
    parent = client.create_run(exp).info.run_id
    study, records = _loss_weights_repeats()
    monkeypatch.setattr(report_module, "load_records", lambda path, s: records)
    out = report_module.make_report(
        str(tmp_path / "exp"), study=study, tracking_uri=uri, parent_run_id=parent,
        notes=["demo on random VGG features"],
    )  # fmt: skip
    run = client.get_run(parent)
    assert out.answer in run.data.tags[report_module.NOTE_TAG]
    assert "Note: demo on random VGG features" in run.data.tags[report_module.NOTE_TAG]
    assert run.data.metrics["best_val_psnr"] == out.best[names.BEST_VAL_PSNR]
    logged = {a.path for a in client.list_artifacts(parent, "report")}
    assert {"report/report.html", "report/groups.parquet", "report/summary.txt"} <= logged
    body, last = out.summary.rsplit("\n\n", 1)
    assert body.endswith(f"logged to MLflow parent run {parent}")
    assert last == f"answer: {out.answer}"


def test_a_fast_path_fallback_is_a_note_of_the_report(tmp_path):
    study = load_study(SHIPPED, "dataset-fraction", "demo")
    off = "on: fused_adam; off: amp (outputs 21.3 dB apart < 30 dB)"
    records = []
    for i, paths in enumerate(["on: fused_adam, amp", off]):
        history = [{names.EPOCH: 0, names.VAL_PSNR: 20.0, "fast_paths": paths},
                   {names.EPOCH: 1, names.VAL_PSNR: 21.0 + i, "fast_paths": paths}]  # fmt: skip
        records.append(TrialRecord(f"t{i}", "TERMINATED", {"fraction": 0.5 + i / 2}, history))
    report = build(records, study, tmp_path / "r")
    assert list(report.trials["fast_paths"]) == ["on: fused_adam, amp", off]
    assert (
        "Note: fraction=1 ran without a fast path its self-test switched off: amp (outputs 21.3 "
        "dB apart < 30 dB)"
    ) in report.answer


def test_the_kept_model_says_how_to_train_it_again_when_tracked():
    from tune.execution.storage import MLFLOW_RUN_KEY
    from tune.report import best_lines

    best = {"label": "per_w=0", "trial_id": "t1", MLFLOW_RUN_KEY: "abc", "best_checkpoint": "/c"}
    lines = best_lines(best, "sqlite:///m.db")
    assert lines[-2:] == [
        "best checkpoint: /c",
        "train it again: python -m ttsr.train --from-run runs:/abc --mlflow-uri sqlite:///m.db",
    ]
    assert not [line for line in best_lines(best) if "again" in line]  # untracked: no command
