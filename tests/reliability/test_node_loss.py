"""A node lost mid-trial: on a two-node Ray cluster on this machine (head 127.0.0.1, worker
127.0.0.2, built with the tests/cluster helpers), the worker node's raylet is SIGKILLed while a
trial runs there; Tune reschedules that trial on the head node, from its last checkpoint, and
every epoch of both trials is in Tune's record (result.json) and in the trial's MLflow child run
exactly once (see tune/execution/trial_record.py and ttsr/tracking/__init__.py::MlflowCallback).
"""

from __future__ import annotations

import shutil
import signal
import sys

import pytest
from cluster import procs
from cluster.conftest import WORKER_IP, _ray_env, _stop_all, start_two_nodes

from ttsr import names
from tune.execution import parent_run

from .conftest import REPO, TINY, mlflow_runs, tiny_study, trial_rows, write_experiments

pytestmark = pytest.mark.slow

EPOCHS = 4
STAGING = "session_*/artifacts/*/nodes-*/driver_artifacts"  # the driver's copy of trial dirs


def test_lost_node_trial_moves_to_the_other_node_from_its_checkpoint():
    root = procs.short_tmpdir("rn")
    logs, ray_tmp, storage = root / "logs", root / "ray", root / "results"  # the helper's layout
    started: list[procs.Started] = []
    try:
        nodes = start_two_nodes(root, started)
        study = tiny_study(config={**TINY, "epochs": EPOCHS}, search={"lr": {"grid": [1e-4, 2e-4]}})
        experiments = write_experiments(root / "exp.yaml", {"nodes": study})
        uri = f"sqlite:///{root}/mlflow.db"
        driver = procs.start(
            "driver",
            [sys.executable, str(REPO / "tune" / "run.py"), "--study", "nodes"]
            + ["--experiments", str(experiments), "--profile", "demo", "--no-report"]
            + ["--address", nodes.address, "--mlflow-uri", uri, "--storage", str(storage)],
            log_dir=logs,
            env={**_ray_env(), "RAY_worker_niceness": "0"},
            cwd=root,
        )
        started.append(driver)

        # Kill the worker node as soon as its trial has reported an epoch (not its last). The
        # driver writes each result to its staging copy at once and syncs it to --storage every
        # few seconds; on a fast machine the whole trial (~1 s epochs) can end within one sync,
        # so both copies are watched.
        def trial_on_worker() -> str | None:
            assert driver.popen.poll() is None, driver.log_tail(60)
            for exp_dir in [*storage.glob("nodes/*/"), *ray_tmp.glob(STAGING)]:
                for tid, rows in trial_rows(exp_dir).items():
                    if rows[-1]["node_ip"] == WORKER_IP and rows[-1][names.EPOCH] < EPOCHS:
                        return tid
            return None

        moved = procs.wait_until(trial_on_worker, timeout=300, what="a report from the worker")
        procs.signal_pids({nodes.worker_raylet()}, signal.SIGKILL)  # the node is lost

        returncode = driver.popen.wait(timeout=600)
        output = driver.log.read_text(errors="replace")
        assert returncode == 0, output[-4000:]
        (exp_dir,) = list(storage.glob("nodes/*/"))
        records = trial_rows(exp_dir)
        assert len(records) == 2
        every_epoch = list(range(0, EPOCHS + 1))  # epoch 0: before training
        for tid, trial in records.items():  # every epoch reported exactly once, in order
            assert [r[names.EPOCH] for r in trial] == every_epoch, (tid, trial)
        rows = records[moved]
        assert rows[0]["node_ip"] == WORKER_IP and rows[-1]["node_ip"] == "127.0.0.1"
        assert (exp_dir / f"trial_{moved}" / "error.txt").is_file()
        assert rows[-1][names.STOP_REASON] == names.STOP_MAX_EPOCHS
        client, parents, children = mlflow_runs(uri, "nodes")
        assert [p.info.status for p in parents] == ["FINISHED"]
        assert len(children) == 2 and all(c.info.status == "FINISHED" for c in children)
        by_trial = {c.data.tags["trial_id"]: c.info.run_id for c in children}
        assert by_trial.keys() == records.keys()
        for tid, run_id in by_trial.items():  # ... and logged to its MLflow child run once
            assert {r[parent_run.MLFLOW_RUN_KEY] for r in records[tid]} == {run_id}
            for key in (names.EPOCH, names.VAL_PSNR):
                steps = sorted(m.step for m in client.get_metric_history(run_id, key))
                assert steps == every_epoch, (tid, key, steps)
    finally:
        left = _stop_all(started)
        stray = procs.pids_naming(str(root))
        procs.signal_pids(stray, signal.SIGKILL)
        if not left and not stray:
            shutil.rmtree(root, ignore_errors=True)
    assert not left, f"processes survived teardown: {sorted(left)}"
