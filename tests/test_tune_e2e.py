"""End to end: tune/run.py on a real local Ray with tiny TTSR trials, tracked in a temp SQLite
MLflow store. Slow (each starts a Ray cluster); kept small: 32 px, n_feats 8, 1+1+1+1, a few
images, 2 epochs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import tiny
import yaml
from cluster import procs
from mlflow_server import empty_store

REPO = Path(__file__).resolve().parent.parent
RUN = [sys.executable, str(REPO / "tune" / "run.py")]

# tests/tiny.py's config with 4-item batches, 2 validation images and a sample grid each epoch
TINY = {
    **tiny.TINY,
    "batch_size": 4,
    "fraction": 0.1,
    "val_limit": 2,
    "epochs": 3,
    "sample_every": 1,
}


def _experiments(tmp_path: Path) -> Path:
    """Two trials side by side under ASHA: lr 3e-4 learns, lr 1e-12 stays frozen, so the frozen
    one is stopped early: by ASHA at epoch 1 when it is behind at the rung, else by the loop's
    patience=1 at epoch 2 (its val_psnr cannot improve)."""
    study = {
        "description": "tiny e2e study",
        "objectives": [{"metric": "val_psnr", "mode": "max"}],
        "scheduler": "asha",
        "config": {**TINY, "patience": 1},
        "search": {"lr": {"grid": [3e-4, 1e-12]}},
        "profiles": {
            "seed": {"data": "nowhere", "gpus_per_trial": 1},
            "demo": {"cpus_per_trial": 1, "max_concurrent": 2, "grace_period": 1},
        },
    }
    path = tmp_path / "experiments.yaml"
    path.write_text(yaml.safe_dump({"studies": {"tiny": study}}))
    return path


def _args(tmp_path: Path, temp_dir: str) -> list[str]:
    return [
        "--study", "tiny",
        "--experiments", str(_experiments(tmp_path)),
        "--mlflow-uri", empty_store(tmp_path / "mlflow.db"),
        "--storage", str(tmp_path / "results"),
        "--num-cpus", "2",
        "--no-dashboard",
        "--ray-temp-dir", temp_dir,
    ]  # fmt: skip


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "MLFLOW_TRACKING_URI")}
    # Ray runs workers at nice 15: on a busy shared CI machine the trials would starve.
    env.update(CUDA_VISIBLE_DEVICES="", TUNE_GLOBAL_CHECKPOINT_S="1", RAY_worker_niceness="0")
    env.update(extra)
    return env


def _with_faults() -> str:
    faults = str(Path(__file__).parent / "faults")
    return os.pathsep.join(p for p in (faults, os.environ.get("PYTHONPATH", "")) if p)


@pytest.fixture
def ray_temp_dir():
    # Short path: Ray's unix sockets live under it and the path length is limited.
    path = tempfile.mkdtemp(prefix="rt_", dir="/tmp")
    yield path


def _runs(tmp_path: Path):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    exp = client.get_experiment_by_name("tiny")
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    return client, parents, children


def _kill_leftovers(pids: list[int]) -> None:
    """Stop processes this test's driver started (by PID), if the kill left any behind."""
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@pytest.mark.slow
@pytest.mark.timeout(900)  # 168 s measured on 2 shared cores under load: room for a slower day
def test_study_runs_tracks_stops_early_and_retries_a_crashed_trial(tmp_path, ray_temp_dir):
    marker = tmp_path / "failed_once"
    out = subprocess.run(
        [*RUN, *_args(tmp_path, ray_temp_dir)],
        cwd=tmp_path,
        # tests/faults/sitecustomize.py, loaded by each of the study's processes: the first
        # trial to report epoch 1 raises once (injected from outside the product)
        env=_env(FAULT_FAIL_ONCE=str(marker), PYTHONPATH=_with_faults()),
        capture_output=True,
        text=True,
        timeout=840,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert marker.exists()  # the test hook fired once ...
    # ... and the trial restarted from its checkpoint (not from scratch: no epoch logged twice)
    assert "resuming from" in _worker_logs(ray_temp_dir)
    assert len(list((tmp_path / "results").rglob("error.txt"))) == 1
    assert "mlflow ui --backend-store-uri sqlite:///" in out.stdout
    assert "best checkpoint:" in out.stdout

    client, parents, children = _runs(tmp_path)
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    parent = parents[0]
    assert parent.data.tags["study"] == "tiny" and parent.data.tags["profile"] == "demo"
    assert len(children) == 2  # one per trial, even for the one that crashed and restarted
    assert len({c.data.tags["trial_id"] for c in children}) == 2
    assert all(c.info.status == "FINISHED" for c in children), [c.info.status for c in children]
    reasons = set()
    for child in children:
        history = client.get_metric_history(child.info.run_id, "val_psnr")
        assert 2 <= len(history) <= 4  # epoch 0 (before training) and 1-3 training epochs
        assert min(m.step for m in history) == 0
        assert len({m.step for m in history}) == len(history)  # no epoch logged twice
        artifacts = [a.path for a in client.list_artifacts(child.info.run_id)]
        assert "images" in artifacts, artifacts  # the step-indexed sample grids
        reasons.add(child.data.tags.get("stop_reason"))
    assert reasons & {"scheduler", "patience"}, reasons
    report_dir = next((tmp_path / "results" / "tiny").glob("*/report"))
    import pandas as pd

    trials = pd.read_parquet(report_dir / "trials.parquet")
    assert len(trials) == 2 and (trials["status"] == "TERMINATED").all()
    stops = set(trials["stop_reason"])
    assert stops & {"asha", "patience"}, stops
    assert (trials["epochs_run"] < 3).any()
    assert trials["best_checkpoint"].notna().all()
    assert all(Path(p).is_dir() for p in trials["best_checkpoint"])
    parent_artifacts = [a.path for a in client.list_artifacts(parent.info.run_id, "report")]
    assert "report/trials.parquet" in parent_artifacts and "report/curves.png" in parent_artifacts


def _worker_logs(ray_temp_dir: str) -> str:
    logs = Path(ray_temp_dir).glob("session_*/logs/worker-*.out")
    return "\n".join(p.read_text(errors="replace") for p in logs if p.is_file())


@pytest.mark.slow
@pytest.mark.timeout(1200)  # 200 s measured under load
def test_killed_driver_resumes_without_duplicate_or_running_runs(tmp_path, ray_temp_dir):
    args = _args(tmp_path, ray_temp_dir)
    driver = subprocess.Popen(
        [*RUN, *args],
        cwd=tmp_path,
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    started: list[int] = []
    try:
        deadline = time.monotonic() + 600  # generous: shared CI machines
        while time.monotonic() < deadline:
            if driver.poll() is not None:
                pytest.fail("the study finished before it could be killed")
            started = sorted(procs.descendants(driver.pid))
            results = list((tmp_path / "results").rglob("result.json"))
            state = list((tmp_path / "results").rglob("experiment_state-*.json"))
            if state and any(r.stat().st_size > 0 for r in results):
                break
            time.sleep(0.5)
        else:
            pytest.fail("no trial reported in time")
        driver.send_signal(signal.SIGKILL)
        driver.wait(timeout=30)
    finally:
        if driver.poll() is None:
            driver.kill()

        # the driver's local Ray processes see it die and exit; what is left after 20 s is killed
        def gone() -> bool:
            return not any(procs.alive(pid) for pid in started)

        try:
            procs.wait_until(gone, timeout=20, what="the killed driver's Ray processes exit")
        except TimeoutError:
            pass
        _kill_leftovers(started)

    _, parents, _ = _runs(tmp_path)
    assert len(parents) == 1 and parents[0].info.status == "RUNNING"  # SIGKILL: nothing ran

    out = subprocess.run(
        [*RUN, *args, "--resume"],
        cwd=tmp_path,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "loading Tune's pickled experiment state" in out.stdout
    _, parents, children = _runs(tmp_path)
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    trial_ids = [c.data.tags["trial_id"] for c in children]
    assert len(trial_ids) == len(set(trial_ids)) == 2, trial_ids
    assert all(c.info.status in ("FINISHED", "KILLED", "FAILED") for c in children)
