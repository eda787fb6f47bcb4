"""The kept trial's sample grids (before training and at the kept epoch), from the step-indexed
images its MLflow run logged, into the report's HTML page (SQLite store)."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from PIL import Image

from ttsr import names
from ttsr.grids import PAD
from ttsr.tracking import MlflowTracker
from tune.execution.storage import MLFLOW_RUN_KEY
from tune.reporting.html_report import kept_trial_grids, logged_steps

COLOURS = {0: "red", 1: "green", 2: "blue", 4: "yellow"}  # epoch -> the grid's colour


@pytest.fixture
def run_with_grids(tmp_path):
    """A run that logged a one-row 8-px test grid per epoch of COLOURS (and a train grid)."""
    uri = f"sqlite:///{tmp_path}/m.db"
    MlflowClient(uri).create_experiment("s", artifact_location=str(tmp_path / "artifacts"))
    with MlflowTracker(tracking_uri=uri, experiment="s") as tracker:
        for epoch, colour in COLOURS.items():
            png = tmp_path / f"{epoch}.png"
            Image.new("RGB", (4 * 8 + 5 * PAD, 8 + 2 * PAD), colour).save(png)
            tracker.log_image(png, key="samples_test", step=epoch)
            tracker.log_image(png, key="samples_train", step=epoch)
    return uri, tracker.run_id


def _colour_at_centre_of_sr(path: Path) -> tuple[int, int, int]:
    with Image.open(path) as image:  # the SR tile is the third column of the display grid
        return image.convert("RGB").getpixel((image.width * 5 // 8, image.height * 3 // 4))


def test_logged_steps_are_the_test_grids_pngs(run_with_grids):
    uri, run_id = run_with_grids
    steps = logged_steps(uri, run_id)
    assert sorted(steps) == sorted(COLOURS)
    assert all(p.endswith(".png") and "samples_test+step+" in p for p in steps.values())


def test_first_and_kept_epoch_grids(run_with_grids, tmp_path):
    uri, run_id = run_with_grids
    found = kept_trial_grids(uri, run_id, label="a", kept_epoch=2, dest=tmp_path / "out")
    assert [c for c, _ in found] == ["a: epoch 0 (before training)", "a: epoch 2 (kept epoch)"]
    assert [_colour_at_centre_of_sr(p) for _, p in found] == [(255, 0, 0), (0, 0, 255)]
    # The logged images are upscaled for the eye: 8-px tiles became >= 128 px.
    with Image.open(found[1][1]) as image:
        assert image.width >= 4 * 128


def test_kept_epoch_without_a_grid_shows_the_last_one_before_it(run_with_grids, tmp_path):
    uri, run_id = run_with_grids
    found = kept_trial_grids(uri, run_id, label="a", kept_epoch=3, dest=tmp_path / "out")
    assert [c for c, _ in found][-1] == "a: epoch 2 (last logged epoch)"


def test_unknown_run_gives_none(run_with_grids, tmp_path):
    uri, _ = run_with_grids
    assert kept_trial_grids(uri, "0" * 32, label="a", kept_epoch=1, dest=tmp_path) == []


def test_report_page_shows_the_kept_trials_grids(run_with_grids, tmp_path):
    from tune.report import TrialRecord, build
    from tune.study.studies import load_study

    uri, run = run_with_grids
    history = [
        {names.EPOCH: 0, names.VAL_PSNR: 10.0, MLFLOW_RUN_KEY: run},
        {names.EPOCH: 1, names.VAL_PSNR: 20.0, MLFLOW_RUN_KEY: run},
        {names.EPOCH: 2, names.VAL_PSNR: 19.0, MLFLOW_RUN_KEY: run, names.BEST_EPOCH: 1},
    ]
    shipped = Path(__file__).resolve().parent.parent / "experiments.yaml"
    study = load_study(shipped, "ref-is-gt", "demo")
    report = build([TrialRecord("a", "TERMINATED", {}, history)], study, tmp_path / "r",
                   tracking_uri=uri)  # fmt: skip
    page = (tmp_path / "r" / "report.html").read_text()
    assert "a: epoch 0 (before training)" in page and "a: epoch 1 (kept epoch)" in page
    pngs = [p for p in report.files if p.suffix == ".png"]
    embedded = page.split("data:image/png;base64,")[1:]
    assert len(embedded) == len(pngs) + 2
    grid = base64.b64decode(embedded[0].split("'", 1)[0])
    assert _colour_at_centre_of_sr(io.BytesIO(grid)) == (255, 0, 0)  # epoch 0 first
