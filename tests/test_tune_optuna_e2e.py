"""End to end: a tiny searched study through tune/run.py keeps its Optuna study in optuna.db
beside the SQLite MLflow store; the driver is killed mid-study and ``--resume`` continues the
same Optuna study, which ends with exactly one COMPLETE trial per Tune trial. Slow (a local Ray,
twice)."""

from __future__ import annotations

import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import optuna
import pytest
import yaml
from cluster import procs
from mlflow_server import empty_store
from optuna.trial import TrialState
from test_tune_e2e import RUN, TINY, _env, _kill_leftovers

from tune.search.stored_search import LOST_ATTR, TUNE_TRIAL_ATTR

TRIALS = 3


def _experiments(tmp_path: Path) -> Path:
    study = {
        "description": "tiny searched study",
        "objectives": [{"metric": "val_psnr", "mode": "max"}],
        "scheduler": "fifo",
        "config": {**TINY, "epochs": 2, "patience": None},
        "search": {"lr": {"choice": [1e-4, 3e-4, 1e-3]}},
        "num_samples": TRIALS,
        "profiles": {
            "seed": {"data": "nowhere", "gpus_per_trial": 1},
            "demo": {"cpus_per_trial": 1, "max_concurrent": 1},
        },
    }
    path = tmp_path / "experiments.yaml"
    path.write_text(yaml.safe_dump({"studies": {"tiny-search": study}}))
    return path


def _trials(url: str) -> tuple[list[str], list[optuna.trial.FrozenTrial]]:
    """(study names, trials of the only study) in the storage; nothing yet: ([], [])."""
    try:
        names = optuna.get_all_study_names(url)
    except Exception:  # noqa: BLE001 - the driver has not created the tables yet
        return [], []
    if len(names) != 1:
        return names, []
    return names, optuna.load_study(study_name=names[0], storage=url).get_trials(deepcopy=False)


@pytest.fixture
def ray_temp_dir():
    path = tempfile.mkdtemp(prefix="rt_", dir="/tmp")  # short: Ray's unix sockets live there
    yield path
    deadline = time.monotonic() + 30
    while procs.pids_naming(path) and time.monotonic() < deadline:
        time.sleep(0.5)
    left = procs.pids_naming(path)
    procs.signal_pids(left, signal.SIGKILL)
    shutil.rmtree(path, ignore_errors=True)
    assert not left, f"processes of this test's Ray survived: {sorted(left)}"


@pytest.mark.slow
@pytest.mark.timeout(480)
def test_killed_driver_resumes_the_same_optuna_study(tmp_path, ray_temp_dir):
    temp_dir = ray_temp_dir
    url = f"sqlite:///{tmp_path}/optuna.db"  # the default: beside mlflow.db
    args = ["--study", "tiny-search", "--experiments", str(_experiments(tmp_path))]
    args += ["--mlflow-uri", empty_store(tmp_path / "mlflow.db"), "--storage", str(tmp_path / "rr")]
    args += ["--num-cpus", "2", "--no-dashboard", "--ray-temp-dir", temp_dir, "--no-report"]
    driver = subprocess.Popen([*RUN, *args], cwd=tmp_path, env=_env(),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    started: list[int] = []
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:  # one trial done, the next one asked
            if driver.poll() is not None:
                pytest.fail("the study finished before it could be killed")
            started = sorted(set(started) | procs.descendants(driver.pid))
            states = [t.state for t in _trials(url)[1]]
            if TrialState.COMPLETE in states and TrialState.RUNNING in states:
                break
            time.sleep(0.5)
        else:
            pytest.fail("no Optuna trial completed in time")
        driver.send_signal(signal.SIGKILL)
        driver.wait(timeout=30)
    finally:
        if driver.poll() is None:
            driver.kill()
        _kill_leftovers(started)
    names, before = _trials(url)
    assert len(names) == 1 and names[0].startswith("tiny-search-")

    out = subprocess.run([*RUN, *args, "--resume"], cwd=tmp_path, env=_env(),
                         capture_output=True, text=True, timeout=300)  # fmt: skip
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert f"optuna:     optuna-dashboard {url} --host 127.0.0.1" in out.stdout
    assert _trials(url)[0] == names  # the same Optuna study, continued
    trials = _trials(url)[1]
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    assert all(LOST_ATTR in t.user_attrs for t in trials if t.state == TrialState.FAIL)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]

    from ray.tune import ExperimentAnalysis

    experiment = next((tmp_path / "rr" / "tiny-search").glob("tiny-search-*/"))
    tune_trials = ExperimentAnalysis(str(experiment)).trials
    assert len(tune_trials) == TRIALS and all(t.status == "TERMINATED" for t in tune_trials)
    # one COMPLETE Optuna trial per Tune trial, with that trial's result: no duplicates
    by_id = {t.trial_id: t for t in tune_trials}
    assert sorted(t.user_attrs[TUNE_TRIAL_ATTR] for t in complete) == sorted(by_id)
    for t in complete:
        tune_trial = by_id[t.user_attrs[TUNE_TRIAL_ATTR]]
        assert t.params["lr"] == tune_trial.config["lr"]
        # Optuna holds the kept epoch's value (what the MLflow run and the report show)
        assert t.value == pytest.approx(tune_trial.last_result["best_val_psnr"])
    # every trial the killed driver had asked is still there, now finished
    assert [t.number for t in before] == [t.number for t in trials[: len(before)]]

    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    exp = client.get_experiment_by_name("tiny-search")
    parents = [r for r in client.search_runs([exp.experiment_id])
               if "mlflow.parentRunId" not in r.data.tags]  # fmt: skip
    assert len(parents) == 1 and parents[0].info.run_name == names[0]
    assert parents[0].data.tags["optuna_storage"] == url
    assert parents[0].data.tags["optuna_study"] == names[0]

    # The trial that ended before the kill, trained again from its MLflow run (`--from-run`):
    # the same curve, epoch by epoch, as a new run tagged with its source.
    from ttsr import names as metric_names
    from ttsr.tracking import RERUN_OF_TAG
    from ttsr.train.cli import main as train_main

    first = min(complete, key=lambda t: t.number)
    (source,) = [r for r in client.search_runs([exp.experiment_id])
                 if r.data.tags.get("trial_id") == first.user_attrs[TUNE_TRIAL_ATTR]]  # fmt: skip
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    argv = ["--from-run", f"runs:/{source.info.run_id}", "--mlflow-uri", uri]
    assert train_main([*argv, "--out", str(tmp_path / "again"), "--no-progress"]) == 0
    (again,) = [r for r in client.search_runs([exp.experiment_id])
                if r.data.tags.get(RERUN_OF_TAG) == source.info.run_id]  # fmt: skip

    def curve(run_id: str) -> list[tuple[int, float]]:
        history = client.get_metric_history(run_id, metric_names.VAL_PSNR)
        return sorted((m.step, m.value) for m in history)

    before, after = curve(source.info.run_id), curve(again.info.run_id)
    assert [s for s, _ in before] == [s for s, _ in after] == [0, 1, 2]
    assert all(abs(a - b) <= 1e-4 for (_, a), (_, b) in zip(before, after, strict=True))
