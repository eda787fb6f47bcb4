"""The Optuna study's RDB storage: the default beside MLflow's store, URL checks (one line, exit
2, before anything starts), the plan's line, and a searcher whose storage stays consistent when
Tune restores it from an older checkpoint (a killed driver)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from tune.search import optuna_store
from tune.study.preflight import PreflightError

REPO = Path(__file__).resolve().parent.parent
RUN = [sys.executable, str(REPO / "tune" / "run.py")]


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "MLFLOW_TRACKING_URI")}
    env["CUDA_VISIBLE_DEVICES"] = ""
    return subprocess.run(RUN + args, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def test_default_lies_beside_a_sqlite_mlflow_store_else_in_the_working_dir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert optuna_store.default_url("sqlite:////data/x/mlflow.db") == "sqlite:////data/x/optuna.db"
    assert (
        optuna_store.default_url("sqlite:///rel/mlflow.db") == f"sqlite:///{tmp_path}/rel/optuna.db"
    )
    assert optuna_store.default_url("http://mlflow:5000") == f"sqlite:///{tmp_path}/optuna.db"


def test_urls_are_made_absolute_and_keep_their_options(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert optuna_store.check_url("sqlite:///o.db") == f"sqlite:///{tmp_path}/o.db"
    assert (
        optuna_store.check_url("sqlite:///o.db?timeout=30")
        == f"sqlite:///{tmp_path}/o.db?timeout=30"
    )
    url = f"sqlite:///{tmp_path}/o.db"
    assert optuna_store.check_url(url) == url
    assert not (tmp_path / "o.db").exists()  # checking creates nothing


@pytest.mark.parametrize(
    ("url", "expect"),
    [
        ("htp://host/db", "not an RDB URL"),
        ("not a url", "not an RDB URL"),
        ("sqlite://", "in-memory database would be lost"),
        ("sqlite:///:memory:", "in-memory database would be lost"),
        ("sqlite:////nonexistent/dir/o.db", "directory /nonexistent/dir does not exist"),
        ("sqlite:///{tmp}/FILE/o.db", "directory {tmp}/FILE does not exist"),
        ("sqlite:///{tmp}/DIR", "is not a writable file"),
    ],
)
def test_bad_urls_name_the_flag(tmp_path, url, expect):
    (tmp_path / "FILE").write_text("a file")
    (tmp_path / "DIR").mkdir()
    with pytest.raises(PreflightError) as e:
        optuna_store.check_url(url.format(tmp=tmp_path))
    message = str(e.value)
    assert message.startswith(f"--optuna-storage {url.format(tmp=tmp_path)}: ")
    assert expect.format(tmp=tmp_path) in message and "\n" not in message


@pytest.mark.skipif(importlib.util.find_spec("psycopg2") is not None, reason="driver installed")
def test_a_missing_database_driver_is_named():
    with pytest.raises(PreflightError, match="database driver is not installed"):
        optuna_store.check_url("postgresql+psycopg2://user@db.example/optuna")


def test_connect_creates_the_store_and_guards_the_study_name(tmp_path):
    url = f"sqlite:///{tmp_path}/o.db"
    optuna_store.connect(url, "study-1", resuming=False)
    assert (tmp_path / "o.db").is_file()
    with pytest.raises(PreflightError, match="no Optuna study 'study-1' there"):
        optuna_store.connect(url, "study-1", resuming=True)
    optuna.create_study(storage=url, study_name="study-1")
    optuna_store.connect(url, "study-1", resuming=True)
    with pytest.raises(PreflightError, match="named 'study-1' exists already"):
        optuna_store.connect(url, "study-1", resuming=False)


def test_bad_flag_exits_2_before_anything_starts(tmp_path):
    for url, expect in [
        ("htp://x/db", "--optuna-storage htp://x/db: not an RDB URL"),
        ("sqlite:////nonexistent/o.db", "directory /nonexistent does not exist"),
    ]:
        out = _run(["--study", "loss-weights", "--optuna-storage", url], tmp_path)
        assert out.returncode == 2, out.stdout + out.stderr
        assert out.stderr.startswith("error: ") and expect in out.stderr
        assert len(out.stderr.strip().splitlines()) == 1
        assert list(tmp_path.iterdir()) == []  # no mlflow.db, no ray_results, nothing


def test_plan_names_the_storage_and_study_of_a_searched_study_only(tmp_path):
    mlflow = f"sqlite:///{tmp_path}/store/mlflow.db"
    (tmp_path / "store").mkdir()
    args = ["--dry-run", "--mlflow-uri", mlflow, "--storage", str(tmp_path / "rr")]
    out = _run(["--study", "loss-weights", *args], tmp_path)
    assert out.returncode == 0, out.stderr
    line = next(x for x in out.stdout.splitlines() if x.startswith("optuna     "))
    assert line.startswith(f"optuna     sqlite:///{tmp_path}/store/optuna.db (study 'loss-weights-")
    given = f"sqlite:///{tmp_path}/elsewhere.db"
    out = _run(["--study", "loss-weights", *args, "--optuna-storage", given], tmp_path)
    assert f"optuna     {given} (study 'loss-weights-" in out.stdout
    grid = _run(["--study", "train-time", *args], tmp_path)  # a grid: no Optuna
    assert grid.returncode == 0 and "optuna     " not in grid.stdout
    assert not (tmp_path / "store" / "optuna.db").exists() and not Path(given[10:]).exists()


# ------------------------------------------------------------------------------------------------
def _searcher(url: str, study_name: str):
    """The shipped loss-weights demo's searcher (multi-objective, its first start point, set to 2
    repeats, at most 2 at a time) on ``url``, as Tune holds it (a SearchGenerator around it)."""
    from dataclasses import replace

    from ray.tune.search import SearchGenerator

    from tune.execution import tuner
    from tune.study.studies import load_study

    study = load_study(REPO / "experiments.yaml", "loss-weights", "demo")
    # One start point, then Optuna; two seeds per configuration (the demo ships 3) keep it short.
    study = replace(study, start_points=study.start_points[:1], repeats=2)
    limiter = tuner.searcher(study, seed=0, optuna_storage=url, optuna_study=study_name)
    generator = SearchGenerator(limiter)
    limiter.set_search_properties(None, None, tuner.param_space(study))
    return generator, limiter


def _finish(limiter, *trial_ids: str) -> None:
    for i, trial_id in enumerate(trial_ids):
        limiter.on_trial_complete(trial_id, {"best_val_psnr": 20.0 + i, "best_val_perceptual": 0.5})


def test_restored_searcher_fails_lost_trials_and_keeps_start_points_once(tmp_path):
    from tune.search.stored_search import LOST_ATTR, TUNE_TRIAL_ATTR

    url, name = f"sqlite:///{tmp_path}/o.db", "loss-weights-x"
    first, limiter = _searcher(url, name)
    start = limiter.suggest("a1")
    assert start == {"per_w": 0.0, "tpl_w": 0.0, "adv_w": 0.0, "__trial_index__": 0}
    assert limiter.suggest("a2")["__trial_index__"] == 1  # the same configuration, seed + 1
    _finish(limiter, "a1", "a2")
    first.save_to_dir(str(tmp_path), session_str="s")  # Tune's periodic checkpoint
    limiter.suggest("b1")  # asked after the checkpoint: the killed driver's last act
    limiter.suggest("b2")

    # A new driver: Tune builds the searcher from tuner.pkl, sets it up, restores the checkpoint.
    second, limiter = _searcher(url, name)
    second.restore_from_dir(str(tmp_path))
    trials = optuna.load_study(study_name=name, storage=url).get_trials(deepcopy=False)
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.FAIL]
    assert trials[0].user_attrs[TUNE_TRIAL_ATTR] == "a1" and trials[0].values == [20.5, 0.5]
    assert LOST_ATTR in trials[1].user_attrs and trials[1].user_attrs[TUNE_TRIAL_ATTR] == "b1"
    next_config = limiter.suggest("c1")
    assert next_config != start  # the start point is not enqueued a second time
    limiter.suggest("c2")
    _finish(limiter, "c1", "c2")
    trials = optuna.load_study(study_name=name, storage=url).get_trials(deepcopy=False)
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.FAIL, TrialState.COMPLETE]
    assert [t.user_attrs[TUNE_TRIAL_ATTR] for t in trials] == ["a1", "b1", "c1"]
    completed = [t.params for t in trials if t.state == TrialState.COMPLETE]
    assert completed.count({"per_w": 0.0, "tpl_w": 0.0, "adv_w": 0.0}) == 1


def _single(url: str, study_name: str):
    """A single-objective stored searcher (reports intermediate values), as Tune holds it."""
    from ray import tune
    from ray.tune.search import SearchGenerator

    from tune.search.stored_search import StoredOptunaSearch

    searcher = StoredOptunaSearch(storage_url=url, study_name=study_name, metric="val_psnr",
                                  mode="max", seed=0)  # fmt: skip
    generator = SearchGenerator(searcher)
    searcher.set_search_properties(None, None, {"lr": tune.choice([1e-4, 3e-4, 1e-3])})
    return generator, searcher


def test_a_trial_finished_after_the_checkpoint_is_rerun_without_touching_its_stored_result(
    tmp_path, caplog
):
    # CI flake of test_killed_driver_resumes_the_same_optuna_study: the killed driver told
    # Optuna trial a1's end after Tune's last checkpoint, which still had a1 running; the
    # resumed Tune ran a1 again and its first report hit Optuna's "Trial#0 has already finished"
    # inside Tune's result handler: the resumed study died with a TuneError.
    url, name = f"sqlite:///{tmp_path}/o.db", "tiny-x"
    first, searcher = _single(url, name)
    searcher.suggest("a1")
    searcher.on_trial_result("a1", {"val_psnr": 20.0, "training_iteration": 1})
    first.save_to_dir(str(tmp_path), session_str="s")  # a1 still running here
    searcher.on_trial_result("a1", {"val_psnr": 21.0, "training_iteration": 2})
    searcher.on_trial_complete("a1", {"val_psnr": 21.0, "training_iteration": 2})

    second, searcher = _single(url, name)
    second.restore_from_dir(str(tmp_path))
    assert {k: v.value for k, v in searcher.finished_in_storage().items()} == {"a1": 21.0}
    searcher.on_trial_result("a1", {"val_psnr": 20.5, "training_iteration": 2})  # the rerun
    with caplog.at_level("WARNING", logger="tune.search.stored_search"):
        searcher.on_trial_complete("a1", {"val_psnr": 20.5, "training_iteration": 2})
    assert "keeps val_psnr = 21.0" in caplog.text and "rerun ended at 20.5" in caplog.text
    (trial,) = optuna.load_study(study_name=name, storage=url).get_trials(deepcopy=False)
    assert trial.state == TrialState.COMPLETE and trial.value == 21.0
    assert trial.intermediate_values == {1: 20.0, 2: 21.0}
    assert searcher.suggest("b1") is not None  # the study goes on
    searcher.on_trial_result("b1", {"val_psnr": 22.0, "training_iteration": 1})
    searcher.on_trial_complete("b1", {"val_psnr": 22.0, "training_iteration": 1})
    trials = optuna.load_study(study_name=name, storage=url).get_trials(deepcopy=False)
    assert [t.value for t in trials] == [21.0, 22.0]


def test_a_multi_objective_trial_finished_after_the_checkpoint_is_rerun_too(tmp_path):
    # The same sequence on the main job's searcher (two objectives, seed repeats, a limiter):
    # a multi-objective FrozenTrial has no .value, its end must not ask for it.
    url, name = f"sqlite:///{tmp_path}/o.db", "loss-weights-x"
    first, limiter = _searcher(url, name)
    limiter.suggest("a1")
    limiter.suggest("a2")  # the second seed of the same configuration
    first.save_to_dir(str(tmp_path), session_str="s")  # a1 and a2 still running here
    _finish(limiter, "a1", "a2")  # Optuna gets their mean

    second, limiter = _searcher(url, name)
    second.restore_from_dir(str(tmp_path))
    for trial_id in ("a1", "a2"):  # the reruns
        limiter.on_trial_result(trial_id, {"best_val_psnr": 19.0, "best_val_perceptual": 0.6})
        limiter.on_trial_complete(trial_id, {"best_val_psnr": 19.0, "best_val_perceptual": 0.6})
    (trial,) = optuna.load_study(study_name=name, storage=url).get_trials(deepcopy=False)
    assert trial.state == TrialState.COMPLETE and trial.values == [20.5, 0.5]
    assert limiter.suggest("b1") is not None  # the study goes on


def test_without_a_storage_the_searcher_stays_in_memory():
    from ray.tune.search.optuna import OptunaSearch

    from tune.execution import tuner
    from tune.search.stored_search import StoredOptunaSearch
    from tune.study.studies import load_study

    study = load_study(REPO / "experiments.yaml", "loss-weights", "demo")
    base = tuner.searcher(study, seed=0).searcher.searcher  # limiter -> repeater -> Optuna
    assert isinstance(base, OptunaSearch) and not isinstance(base, StoredOptunaSearch)


def test_the_shipped_searcher_is_saved_and_its_trials_point_to_mlflow(tmp_path):
    """Tune pickles the searcher with its experiment state (a local lambda in it ended the
    main job with "Can't pickle local object"); each Optuna trial names its MLflow runs."""
    import pickle

    from ray.tune.search import SearchGenerator

    from tune.execution.tuner import param_space
    from tune.execution.tuner import searcher as make_searcher
    from tune.study.studies import load_study

    study = load_study(REPO / "experiments.yaml", "loss-weights", "demo")
    url, name = f"sqlite:///{tmp_path}/o.db", "lw-x"
    meta = {"tracking_uri": "sqlite:///m.db", "experiment_id": "3", "parent_run_id": "p" * 32}
    limiter = make_searcher(study, seed=0, optuna_storage=url, optuna_study=name, meta=meta)
    generator = SearchGenerator(limiter)
    limiter.set_search_properties(None, None, param_space(study))
    assert limiter.suggest("t1") is not None
    pickle.dumps(limiter)
    generator.save_to_dir(str(tmp_path), session_str="s")
    trials = optuna.load_study(study_name=name, storage=url).get_trials(deepcopy=False)
    (trial,) = [t for t in trials if "tune_trial_id" in t.user_attrs]
    assert trial.user_attrs["mlflow_config_tag"] == "per_w=0, tpl_w=0, adv_w=0"  # a start point
    assert trial.user_attrs["mlflow_parent_run_id"] == "p" * 32
    assert "viewStateShareKey=" + "p" * 32 in trial.user_attrs["mlflow_runs"]
    stored = optuna.load_study(study_name=name, storage=url)
    assert stored.metric_names == ["best_val_psnr (kept epoch)", "best_val_perceptual (kept epoch)"]
