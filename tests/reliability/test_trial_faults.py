"""A local study under faults, with real processes, Ray and an MLflow (SQLite) store:

- the worker process of a trial is SIGKILLed mid-study: Tune restarts the trial from its last
  checkpoint (FailureConfig), the result equals an uninterrupted run, no epoch is reported twice,
  and the trial keeps its one MLflow child run;
- a second trial diverges (a real config: lr_gamma 1e7 with lr_decay_epochs 1 multiplies the
  learning rate by 1e7 after epoch 1): it ends with stop_reason=diverged, its best checkpoint
  (epoch 1) is intact, and the study carries on;
- while it runs, every TCP port the study's processes listen on is bound to 127.0.0.1.

The restart after a Python exception (tests/faults/sitecustomize.py) and a SIGKILLed driver are
tests/test_tune_e2e.py's; a SIGINTed driver and Optuna's history: test_driver_interrupt.py.
"""

from __future__ import annotations

import math
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch

from ttsr import names
from tune.execution import parent_run

from .conftest import (
    RUN,
    TINY,
    descendants,
    env,
    experiment_dirs,
    listening_sockets,
    mlflow_runs,
    pids_naming,
    study_args,
    tiny_study,
    trial_rows,
    write_experiments,
)

pytestmark = pytest.mark.slow

EPOCHS = 4
CONFIG = {**TINY, "epochs": EPOCHS, "lr_decay_epochs": 1}
HEALTHY, DIVERGING = 0.5, 1.0e7  # lr_gamma of the two trials


def _wait(driver: subprocess.Popen, what: str, check, timeout: float = 300.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        if driver.poll() is not None:
            pytest.fail(f"the study ended (exit {driver.returncode}) before {what}")
        time.sleep(0.2)
    pytest.fail(f"timed out waiting for {what}")


def _baseline_psnr(tmp_path: Path) -> list[float]:
    """The same trial trained in this process without interruption (one thread, as in Ray)."""
    from ttsr.config import TrainConfig
    from ttsr.train import train

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        values = {**CONFIG, "lr_gamma": HEALTHY, "out_dir": str(tmp_path / "baseline")}
        result = train(TrainConfig.from_dict(values), progress=False)
    finally:
        torch.set_num_threads(threads)
    return [h[names.VAL_PSNR] for h in result.history]


def test_killed_trial_worker_resumes_and_diverged_trial_stops(tmp_path, ray_temp_dir):
    study = tiny_study(config=CONFIG, search={"lr_gamma": {"grid": [HEALTHY, DIVERGING]}})
    experiments = write_experiments(tmp_path / "exp.yaml", {"faults": study})
    log = (tmp_path / "driver.log").open("w")
    driver = subprocess.Popen(
        [*RUN, *study_args(tmp_path, ray_temp_dir, "faults", experiments, dashboard=True)],
        cwd=tmp_path,
        env=env(),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:

        def healthy_epoch_1():  # a report before the last epoch
            dirs = experiment_dirs(tmp_path, "faults")
            for tid, rows in (trial_rows(dirs[0]) if dirs else {}).items():
                if rows[0]["config"]["lr_gamma"] == HEALTHY and rows[-1][names.EPOCH] < EPOCHS:
                    return tid, rows[-1]
            return None

        trial_id, row = _wait(driver, "a healthy trial's report", healthy_epoch_1)
        ours = descendants(driver.pid) | pids_naming(ray_temp_dir)
        sockets = listening_sockets(ours)
        os.kill(row["pid"], signal.SIGKILL)  # mid-epoch (usually 2) of that trial
        returncode = driver.wait(timeout=300)
    finally:
        if driver.poll() is None:
            driver.kill()
        log.close()
    output = (tmp_path / "driver.log").read_text(errors="replace")
    assert returncode == 0, output[-4000:]

    # --- security: the local study's servers listen on loopback only ------------------------
    assert sockets, "found no listening socket of the study's processes"
    exposed = [s for s in sockets if s[1] not in ("127.0.0.1", "::1")]
    assert not exposed, f"(pid, address, port) not on 127.0.0.1: {exposed}"

    # --- the killed trial: restarted from its checkpoint, same result, same child run --------
    exp_dir = experiment_dirs(tmp_path, "faults")[0]
    rows = trial_rows(exp_dir)
    healthy = rows[trial_id]
    epochs = [r[names.EPOCH] for r in healthy]
    assert epochs == list(range(0, EPOCHS + 1)), epochs  # resumed after epoch 1, none repeated
    assert healthy[0]["pid"] == row["pid"] and healthy[-1]["pid"] != row["pid"]  # a new worker
    assert len(list(exp_dir.glob(f"trial_{trial_id}/error.txt"))) == 1  # Tune saw the death
    assert len({r[parent_run.MLFLOW_RUN_KEY] for r in healthy}) == 1  # one child run throughout
    assert healthy[-1][names.STOP_REASON] == names.STOP_MAX_EPOCHS
    baseline = _baseline_psnr(tmp_path)
    got = [r[names.VAL_PSNR] for r in healthy]
    assert got == pytest.approx(baseline, abs=0.05), (got, baseline)

    # --- the diverged trial: stopped, best checkpoint intact, study carried on ---------------
    (div_id,) = [t for t in rows if t != trial_id]
    diverged = rows[div_id]
    assert diverged[-1][names.STOP_REASON] == names.STOP_DIVERGED, diverged[-1]
    assert [r[names.EPOCH] for r in diverged] == [0, 1, 2]
    assert math.isnan(diverged[-1][names.VAL_PSNR]) and diverged[-1][names.BEST_EPOCH] == 1

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client, parents, children = mlflow_runs(uri, "faults")
    assert [p.info.status for p in parents] == ["FINISHED"]
    assert len(children) == 2 and {c.data.tags["trial_id"] for c in children} == set(rows)
    assert all(c.info.status == "FINISHED" for c in children), [c.info.status for c in children]
    by_trial = {c.data.tags["trial_id"]: c for c in children}
    assert by_trial[trial_id].info.run_id == healthy[0][parent_run.MLFLOW_RUN_KEY]
    steps = [m.step for m in client.get_metric_history(by_trial[trial_id].info.run_id, "val_psnr")]
    assert sorted(steps) == list(range(0, EPOCHS + 1)), steps  # continued, nothing logged twice
    div_run = by_trial[div_id]
    assert div_run.data.tags[names.STOP_REASON] == names.STOP_DIVERGED
    from ttsr.checkpoint import load_checkpoint, load_model
    from ttsr.tracking.mlflow_model import local_checkpoint

    best = local_checkpoint(f"runs:/{div_run.info.run_id}/model", tmp_path, tracking_uri=uri)
    ckpt = load_checkpoint(best)
    assert ckpt["epoch"] == 1 and math.isfinite(ckpt["val_psnr"])
    assert all(torch.isfinite(t).all() for t in ckpt["model"].values())
    load_model(best)
