"""Ctrl-C (SIGINT) to the driver of an Optuna study mid-way, then ``--resume``: the study
completes with exactly one MLflow child run per trial, no run left RUNNING, and Optuna's
history survives the restart -- the trials' configurations are exactly the ones a never
interrupted searcher with the same seed proposes, so nothing is proposed twice.

A SIGKILLed driver (grid study) is tests/test_tune_e2e.py's
test_killed_driver_resumes_without_duplicate_or_running_runs.
"""

from __future__ import annotations

import signal
import subprocess
import time

import pytest
from clis import AS_FROM_A_TERMINAL

from ttsr import names
from tune.execution import parent_run

from .conftest import (
    RUN,
    TINY,
    env,
    experiment_dirs,
    mlflow_runs,
    run,
    study_args,
    tiny_study,
    trial_rows,
    write_experiments,
)

pytestmark = pytest.mark.slow

TRIALS = 3
SPACE = {"lr": {"loguniform": [1e-5, 1e-3]}}  # continuous: a repeated proposal is no accident


def _expected_configs(experiments, study_name: str, count: int) -> list[dict]:
    """What the study's own searcher proposes when nothing interrupts it (Optuna's first
    ``n_startup_trials`` proposals do not depend on the results fed back)."""
    from tune.execution import tuner
    from tune.study.studies import load_study

    study = load_study(experiments, study_name, "demo")
    limiter = tuner.searcher(study, seed=0)
    optuna = limiter.searcher
    optuna.set_search_properties(None, None, tuner.param_space(study))
    out = []
    for i in range(count):
        out.append(optuna.suggest(f"t{i}"))
        optuna.on_trial_complete(f"t{i}", {names.VAL_PSNR: 10.0 + i})
    return out


def test_sigint_then_resume_completes_without_duplicates(tmp_path, ray_temp_dir):
    config = {**TINY, "epochs": 2}
    study = tiny_study(config=config, search=SPACE, num_samples=TRIALS)
    study["profiles"]["demo"]["max_concurrent"] = 1  # one after the other: interrupt the 2nd
    experiments = write_experiments(tmp_path / "exp.yaml", {"optuna": study})
    args = study_args(tmp_path, ray_temp_dir, "optuna", experiments)
    log = (tmp_path / "driver.log").open("w")
    driver = subprocess.Popen(
        [*AS_FROM_A_TERMINAL, *RUN, *args],
        cwd=tmp_path,
        env=env(),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if driver.poll() is not None:
                pytest.fail(f"study ended (exit {driver.returncode}) before the interrupt")
            dirs = experiment_dirs(tmp_path, "optuna")
            if dirs and len(trial_rows(dirs[0])) >= 2:  # 1st trial done, 2nd reported
                break
            time.sleep(0.2)
        else:
            pytest.fail("no second trial in time")
        driver.send_signal(signal.SIGINT)
        first_rc = driver.wait(timeout=120)
    finally:
        if driver.poll() is None:
            driver.kill()
        log.close()
    output = (tmp_path / "driver.log").read_text(errors="replace")
    assert first_rc != 0, output[-3000:]
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    _, parents, children = mlflow_runs(uri, "optuna")
    assert [p.info.status for p in parents] == [parent_run.KILLED], output[-3000:]
    assert all(c.info.status != parent_run.RUNNING for c in children)

    out = run([*RUN, *args, "--resume"], cwd=tmp_path, timeout=300)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "loading Tune's pickled experiment state" in out.stdout

    dirs = experiment_dirs(tmp_path, "optuna")
    assert len(dirs) == 1  # resumed the same invocation
    rows = trial_rows(dirs[0])
    assert len(rows) == TRIALS
    assert all(r[-1][names.EPOCH] == 2 for r in rows.values())  # every trial finished
    _, parents, children = mlflow_runs(uri, "optuna")
    assert [p.info.status for p in parents] == [parent_run.FINISHED]
    trial_ids = sorted(c.data.tags["trial_id"] for c in children)
    assert trial_ids == sorted(rows), (trial_ids, sorted(rows))  # one child per trial, no more
    assert all(c.info.status != parent_run.RUNNING for c in children)

    # one trial at a time: the order of their first reports is the order Optuna proposed them
    order = sorted(rows, key=lambda t: rows[t][0]["timestamp"])
    got = [rows[t][0]["config"] for t in order]
    expected = _expected_configs(experiments, "optuna", TRIALS)
    assert [g["lr"] for g in got] == pytest.approx([e["lr"] for e in expected], rel=1e-9)
    assert len({g["lr"] for g in got}) == TRIALS
