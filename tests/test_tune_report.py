"""The report from synthetic trial histories: tables, Pareto front, plots, train-time table."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ttsr import names
from tune.report import TrialRecord, build, frames, pareto_mask
from tune.studies import load_study

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
