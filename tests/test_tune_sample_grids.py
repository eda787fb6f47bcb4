"""The latest test grid of the best trials, from their MLflow child runs (SQLite store)."""

from __future__ import annotations

import pytest
from mlflow.tracking import MlflowClient
from PIL import Image

from ttsr import names
from ttsr.tracking import MLFLOW_RUN_KEY
from tune.sample_grids import latest_test_grids


@pytest.fixture
def store(tmp_path):
    uri = f"sqlite:///{tmp_path}/m.db"
    client = MlflowClient(uri)
    exp = client.create_experiment("s", artifact_location=str(tmp_path / "artifacts"))
    return uri, client, exp


def _run_with_grids(client, exp, tmp_path, grids):
    run = client.create_run(exp).info.run_id
    for name, colour in grids:
        path = tmp_path / name
        Image.new("RGB", (800, 400), colour).save(path)
        client.log_artifact(run, str(path), artifact_path="samples")
    return run


def test_latest_test_grid_per_run_shrunk(store, tmp_path):
    uri, client, exp = store
    best = _run_with_grids(
        client,
        exp,
        tmp_path,
        [("epoch_001_test.png", "red"), ("epoch_002_test.png", "blue"),
         ("epoch_003_train.png", "green")],
    )  # fmt: skip
    empty = client.create_run(exp).info.run_id  # sample_every 0: no grids
    runs = [("best", best), ("empty", empty), ("gone", "0" * 32)]
    found = latest_test_grids(uri, runs, tmp_path / "out", max_side=200)
    assert [caption for caption, _ in found] == ["best: epoch 2 (LR up | Ref | SR | HR)"]
    with Image.open(found[0][1]) as image:
        assert image.size == (200, 100) and image.getpixel((0, 0)) == (0, 0, 255)


def test_limit(store, tmp_path):
    uri, client, exp = store
    runs = [
        (f"t{i}", _run_with_grids(client, exp, tmp_path, [("epoch_001_test.png", "red")]))
        for i in range(3)
    ]
    assert len(latest_test_grids(uri, runs, tmp_path / "out", limit=2)) == 2


def test_report_page_shows_the_best_trials_grid(store, tmp_path):
    from pathlib import Path

    from tune.report import TrialRecord, build
    from tune.studies import load_study

    uri, client, exp = store
    run = _run_with_grids(client, exp, tmp_path, [("epoch_002_test.png", "blue")])
    history = [
        {names.EPOCH: 0, names.VAL_PSNR: 10.0, MLFLOW_RUN_KEY: run},
        {names.EPOCH: 1, names.VAL_PSNR: 20.0, MLFLOW_RUN_KEY: run},
    ]
    shipped = Path(__file__).resolve().parent.parent / "experiments.yaml"
    study = load_study(shipped, "ref-is-gt", "demo")
    report = build([TrialRecord("a", "TERMINATED", {}, history)], study, tmp_path / "r",
                   tracking_uri=uri)  # fmt: skip
    page = (tmp_path / "r" / "report.html").read_text()
    assert "a: epoch 2 (LR up | Ref | SR | HR)" in page
    pngs = [p for p in report.files if p.suffix == ".png"]
    assert page.count("data:image/png;base64,") == len(pngs) + 1
