"""Load: a study of 8 tiny trials, up to 4 at a time on a 2-core machine (``--num-cpus 4
--cpus-per-trial 1``: Ray's logical CPUs, so 4 trial processes share the 2 cores).

Every trial ends, Tune's record holds each of its epochs once, MLflow holds exactly one child
run per trial (no duplicates) and none RUNNING, and the driver's memory stays bounded: its peak
RSS, sampled with psutil while the study runs, is printed with the wall time and must stay
under ``DRIVER_RSS_LIMIT``.

Why 8: 4 at once is the load (twice as many trial processes as cores, starting, reporting and
logging together); twice that makes every slot end one trial and start another, which is where
a duplicate or lost run would come from. 40 trials (five waves of 8) took 415 s, 16 (two waves
of 8) 160 s, and proved nothing two waves of 4 do not: the count of slots changes how long a
wave takes, not what can go wrong between waves.
"""

from __future__ import annotations

import subprocess
import time

import psutil
import pytest

from ttsr import names
from tune.execution import parent_run

from .conftest import (
    RUN,
    TINY,
    env,
    experiment_dirs,
    mlflow_runs,
    study_args,
    tiny_study,
    trial_rows,
    write_experiments,
)

pytestmark = pytest.mark.slow

TRIALS, CONCURRENT = 8, 4
TRIAL_TITLE = "ray::ImplicitFunc"  # how Ray titles a function trainable's worker process
DRIVER_RSS_LIMIT = 2 * 2**30  # generous: the driver holds the trials' state, not their models


def test_eight_tiny_trials_four_at_a_time(tmp_path, ray_temp_dir, figures):
    config = {**TINY, "size": 16, "epochs": 1, "val_limit": 1}
    lrs = [round(1e-4 * (1 + i / 10), 6) for i in range(TRIALS)]
    study = tiny_study(config=config, search={"lr": {"grid": lrs}})
    study["profiles"]["demo"].update(cpus_per_trial=1, max_concurrent=CONCURRENT)
    experiments = write_experiments(tmp_path / "exp.yaml", {"load": study})
    args = study_args(tmp_path, ray_temp_dir, "load", experiments)
    args[args.index("--num-cpus") + 1] = str(CONCURRENT)
    log = (tmp_path / "driver.log").open("w")
    started = time.monotonic()
    driver = subprocess.Popen(
        [*RUN, *args], cwd=tmp_path, env=env(), stdout=log, stderr=subprocess.STDOUT
    )
    try:
        peak_rss, most_running = _watch(driver, tmp_path, timeout=840)
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait()
        log.close()
    wall = time.monotonic() - started
    output = (tmp_path / "driver.log").read_text(errors="replace")
    figures(
        f"{TRIALS} trials, up to {CONCURRENT} at a time: {wall:.0f} s wall, driver peak RSS "
        f"{peak_rss / 2**20:.0f} MiB, at most {most_running} trial processes seen at once"
    )
    assert driver.returncode == 0, output[-4000:]

    (experiment_dir,) = experiment_dirs(tmp_path, "load")
    rows = trial_rows(experiment_dir)
    assert len(rows) == TRIALS
    assert all([r[names.EPOCH] for r in trial] == [0, 1] for trial in rows.values())
    _, parents, children = mlflow_runs(f"sqlite:///{tmp_path}/mlflow.db", "load")
    assert [p.info.status for p in parents] == [parent_run.FINISHED]
    trial_ids = [c.data.tags["trial_id"] for c in children]
    assert sorted(trial_ids) == sorted(rows)  # runs = trials: none missing, none twice
    assert all(c.info.status == parent_run.FINISHED for c in children)
    assert peak_rss < DRIVER_RSS_LIMIT, f"driver peak RSS {peak_rss / 2**20:.0f} MiB"


def _watch(driver: subprocess.Popen, tmp_path, *, timeout: float) -> tuple[int, int]:
    """Sample the driver's RSS (the driver process alone, not Ray's or the trials') and count
    its trial processes until it exits; returns (peak RSS in bytes, most trials at once)."""
    me = psutil.Process(driver.pid)
    peak, most = 0, 0
    deadline = time.monotonic() + timeout
    while driver.poll() is None:
        assert time.monotonic() < deadline, f"the study did not end within {timeout:.0f} s"
        try:
            peak = max(peak, me.memory_info().rss)
            most = max(most, sum(_is_trial(p) for p in me.children(recursive=True)))
        except psutil.Error:  # the driver is exiting
            pass
        time.sleep(0.5)
    return peak, most


def _is_trial(p: psutil.Process) -> bool:
    try:
        return " ".join(p.cmdline()).startswith(TRIAL_TITLE)
    except psutil.Error:
        return False
