"""What a person sees in optuna-dashboard, in headless Chromium: the Optuna study a searched study
keeps in its RDB storage (written here by the study's own searcher, `tune.execution.tuner.searcher`
on SQLite, six configurations over the demo's seeds each) is listed, its trials page shows every
trial with its Tune trial id and where its MLflow runs are, and its page draws the parameter
importance with the objectives named. Screenshots go to test-artifacts/. The dashboard is a real
``optuna-dashboard`` process on 127.0.0.1, stopped by PID."""

from __future__ import annotations

import importlib.util
import json
import re
import sys
import time
import urllib.request
from pathlib import Path

import optuna
import pytest

from tune.execution import tuner
from tune.search.stored_search import TUNE_TRIAL_ATTR
from tune.study.studies import load_study

from . import procs
from .test_browser import _screenshot, browser, page  # noqa: F401 - fixtures

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
STUDY_NAME = "loss-weights-20261201-120000"  # as tune/run.py names it: the run name
CONFIGS = 6
DASHBOARD = Path(sys.executable).parent / "optuna-dashboard"


def _objectives(config: dict) -> dict[str, float]:
    """Made-up results that depend on the weights (mostly on per_w), so importance has signal."""
    psnr = 25.0 - 0.08 * config["per_w"] - 20.0 * config["adv_w"] - 0.1 * config["tpl_w"]
    # the searcher is told each objective at the trial's kept epoch
    return {"best_val_psnr": psnr, "best_val_perceptual": 0.5 - 0.002 * config["per_w"]}


@pytest.fixture(scope="module")
def optuna_study(tmp_path_factory) -> str:
    """The storage URL of a finished loss-weights (demo) Optuna study, as its searcher wrote it."""
    url = f"sqlite:///{tmp_path_factory.mktemp('optuna')}/optuna.db"
    study = load_study(REPO / "experiments.yaml", "loss-weights", "demo")
    meta = {"tracking_uri": "sqlite:///m.db", "experiment_id": "1", "parent_run_id": "f" * 32}
    limiter = tuner.searcher(study, seed=0, optuna_storage=url, optuna_study=STUDY_NAME, meta=meta)
    limiter.set_search_properties(None, None, tuner.param_space(study))
    for i in range(CONFIGS):
        for seed in "abc"[: study.repeats]:  # one configuration, its seeds, one at a time
            trial_id = f"t{i}{seed}"  # (the limiter holds at most max_concurrent at once)
            limiter.on_trial_complete(trial_id, _objectives(limiter.suggest(trial_id)))
    trials = optuna.load_study(study_name=STUDY_NAME, storage=url).trials
    assert [t.state.name for t in trials] == ["COMPLETE"] * CONFIGS
    return url


def _get_json(url: str):
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.loads(r.read().decode())


@pytest.fixture(scope="module")
def dashboard(optuna_study, tmp_path_factory):
    """(base URL, study id) of optuna-dashboard serving the study; stopped by PID after."""
    if importlib.util.find_spec("optuna_dashboard") is None or not DASHBOARD.exists():
        pytest.skip("optuna-dashboard not installed (pip install optuna-dashboard)")
    port = procs.free_port()
    server = procs.start(
        "optuna-dashboard",
        # wsgiref: one process (gunicorn, its default when installed, forks workers)
        [str(DASHBOARD), optuna_study, "--host", "127.0.0.1", "--port", str(port)]
        + ["--server", "wsgiref", "--quiet"],
        log_dir=tmp_path_factory.mktemp("logs"),
    )
    base = f"http://127.0.0.1:{port}"
    try:
        procs.wait_http(f"{base}/api/studies", timeout=60, proc=server, expect=STUDY_NAME)
        studies = _get_json(f"{base}/api/studies")["study_summaries"]
        study_id = next(s["study_id"] for s in studies if s["study_name"] == STUDY_NAME)
        yield base, study_id
    finally:
        left = server.stop(grace=5.0)
        assert not left, f"optuna-dashboard processes survived: {sorted(left)}"


def test_dashboard_lists_the_study_and_every_trial(page, dashboard):  # noqa: F811
    base, study_id = dashboard
    page.goto(f"{base}/dashboard")
    try:
        link = page.locator(f'a[href$="/dashboard/studies/{study_id}"]').first
        link.wait_for()
        assert STUDY_NAME in link.inner_text()
        page.get_by_text("Direction: MAXIMIZE, MINIMIZE").first.wait_for()  # two objectives
    finally:
        _screenshot(page, "optuna-dashboard-studies.png")
    page.goto(f"{base}/dashboard/studies/{study_id}/trials")
    try:
        page.get_by_text(f"{CONFIGS} Trials").first.wait_for()
        for number in range(CONFIGS):
            page.get_by_text(f"Trial {number}", exact=True).first.wait_for()
        # the selected (first) trial's detail: its Tune trial id, as the MLflow child run has it
        page.get_by_text("User Attributes").first.wait_for()
        page.get_by_text(TUNE_TRIAL_ATTR).first.wait_for()
        page.get_by_text("t0a").first.wait_for()
        # ... and where its MLflow runs are: the config tag they carry, the grouped view
        page.get_by_text("mlflow_config_tag").first.wait_for()
        page.get_by_text("per_w=0, tpl_w=0, adv_w=0").first.wait_for()
        page.get_by_text("mlflow_runs").first.wait_for()
    finally:
        _screenshot(page, "optuna-dashboard-trials.png")


def test_dashboard_draws_parameter_importance(page, dashboard):  # noqa: F811
    base, study_id = dashboard
    # what the dashboard computes (one list per objective) is what its chart must show
    per_objective = _get_json(f"{base}/api/studies/{study_id}/param_importances")
    importances = per_objective["param_importances"]
    assert len(importances) == 2
    assert {p["name"] for p in importances[0]} == {"per_w", "tpl_w", "adv_w"}
    page.goto(f"{base}/dashboard/studies/{study_id}")
    try:
        page.get_by_text("Hyperparameter Importance").first.wait_for()
        expected = [f"{p['importance']:.2f}" for objective in importances for p in objective]
        deadline = time.monotonic() + 60
        while True:  # Plotly draws the bars (and their labels) after the data arrives
            text = page.inner_text("body")
            chart = text[text.find("Hyperparameter Importance") : text.find("Timeline")]
            labels = re.findall(r"^\d\.\d\d$", chart, flags=re.MULTILINE)
            names = {n for n in ("per_w", "tpl_w", "adv_w") if n in chart}
            if sorted(labels) == sorted(expected) and len(names) == 3:
                break
            if time.monotonic() > deadline:
                pytest.fail(f"importance chart shows {labels}, {names}; expected {expected}")
            page.wait_for_timeout(500)
        # the objectives are named (they were "Objective 0/1")
        assert "best_val_psnr (kept epoch)" in chart and "Objective 0" not in chart
    finally:
        _screenshot(page, "optuna-dashboard-importance.png")
