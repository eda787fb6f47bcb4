"""The MLflow tracking server goes away and comes back (a real ``mlflow server``, SIGKILLed by
PID and started again on the same port and store).

- ``MlflowTracker`` past the client's retry budget: what it logs while the server is down is
  kept and sent, in order, when it is back; a server still down at the end leaves the run
  RUNNING with ``complete`` False instead of raising.
- ``python -m ttsr.train`` whose server dies mid-run: training goes on to the end; then one line,
  exit 69, naming the run left RUNNING; the checkpoints are complete.
- A study whose server is down for 20 s mid-study (MLflow's own retry budget, unchanged): the
  study completes (exit 0), every trial's child run holds every epoch exactly once, nothing is
  left RUNNING.
"""

from __future__ import annotations

import subprocess
import time

import pytest
from mlflow_server import MlflowServer

from ttsr import names
from ttsr.cli_errors import EXIT_UNAVAILABLE
from tune.execution import parent_run

from .conftest import (
    RUN,
    TINY,
    TINY_FLAGS,
    TRAIN,
    assert_one_error_line,
    env,
    experiment_dirs,
    mlflow_runs,
    study_args,
    tiny_study,
    trial_rows,
    write_experiments,
)

pytestmark = pytest.mark.slow

# Longer than a tiny epoch (1-2 s), so every running trial logs into the outage (the test checks
# that one ran through it); well inside the client's retry budget (MLflow's default
# MLFLOW_HTTP_REQUEST_*: about 4 minutes a request), which carries a trial over. 60 s proved
# nothing more.
OUTAGE_S = 20.0


@pytest.fixture
def server(tmp_path):
    with MlflowServer(tmp_path / "mlflow") as s:
        yield s


def _epochs(client, run_id: str) -> list[int]:
    return sorted(int(m.step) for m in client.get_metric_history(run_id, names.EPOCH))


def test_tracker_keeps_what_it_logs_while_the_server_is_down(server, monkeypatch, capfd):
    from ttsr.tracking import MlflowTracker

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # past the budget at once
    tracker = MlflowTracker(tracking_uri=server.uri, experiment="outage")
    with tracker:
        tracker.log_metrics({names.EPOCH: 0, "v": 0.5}, step=0)
        server.kill()
        tracker.log_metrics({names.EPOCH: 1, "v": 1.5}, step=1)  # kept, not raised
        tracker.set_tags({"during": "outage"})
        assert len(tracker.unsent) == 2
        assert "unreachable" in capfd.readouterr().err
        server.start()
        tracker.log_metrics({names.EPOCH: 2, "v": 2.5}, step=2)
        assert tracker.unsent == []
        assert "answers again" in capfd.readouterr().err
    client = tracker.client
    run = client.get_run(tracker.run_id)
    assert run.info.status == "FINISHED" and tracker.complete
    assert _epochs(client, tracker.run_id) == [0, 1, 2]
    assert run.data.tags["during"] == "outage"

    second = MlflowTracker(tracking_uri=server.uri, experiment="outage")
    with second:
        server.kill()
        second.log_metrics({names.EPOCH: 0}, step=0)
    assert not second.complete and len(second.unsent) == 1  # ended without raising
    assert "stays RUNNING" in capfd.readouterr().err
    server.start()
    assert second.client.get_run(second.run_id).info.status == "RUNNING"


def test_train_cli_server_gone_mid_run_trains_to_the_end_then_one_line(server, tmp_path):
    out_dir, epochs = tmp_path / "o", 6
    argv = [*TRAIN, *TINY_FLAGS, "--epochs", str(epochs), "--out", str(out_dir)]
    argv += ["--mlflow-uri", server.uri, "--experiment", "cli"]
    log = tmp_path / "train.log"
    with open(log, "w") as stdout:
        proc = subprocess.Popen(
            argv,
            cwd=tmp_path,
            env=env(MLFLOW_HTTP_REQUEST_MAX_RETRIES="1"),  # a short budget: a 4-min test else
            stdout=stdout,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            deadline = time.monotonic() + 180
            while f"epoch 1/{epochs}" not in log.read_text():
                assert proc.poll() is None, proc.stderr.read()
                assert time.monotonic() < deadline, "no epoch 1 in time"
                time.sleep(0.1)
            server.kill()
            _, stderr = proc.communicate(timeout=300)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    done = subprocess.CompletedProcess(argv, proc.returncode, log.read_text(), stderr)
    last = assert_one_error_line(done, EXIT_UNAVAILABLE, server.uri)
    assert "stays RUNNING" in last, last
    assert f"epoch {epochs}/{epochs}" in done.stdout  # trained to the end
    from ttsr.checkpoint import load_state

    assert load_state(out_dir / "checkpoints" / "latest")["epoch"] == epochs


def test_study_survives_the_tracking_server_down_20_s(server, tmp_path, ray_temp_dir, figures):
    started = time.monotonic()
    # Two trials, both running (2 at a time) when the server goes: each must carry its epochs
    # over the outage; a third, queued behind them, proved nothing more.
    trials, epochs = 2, 4
    study = tiny_study(config={**TINY, "epochs": epochs}, search={"lr": {"grid": [1e-4, 2e-4]}})
    experiments = write_experiments(tmp_path / "exp.yaml", {"outage": study})
    args = study_args(tmp_path, ray_temp_dir, "outage", experiments)
    args[args.index("--mlflow-uri") + 1] = server.uri
    log = (tmp_path / "driver.log").open("w")
    driver = subprocess.Popen(
        [*RUN, *args], cwd=tmp_path, env=env(), stdout=log, stderr=subprocess.STDOUT
    )
    try:
        killed, back = _outage_once_a_trial_reported(driver, tmp_path, server)
        rc = driver.wait(timeout=600)
    finally:
        if driver.poll() is None:
            driver.kill()
        log.close()
    output = (tmp_path / "driver.log").read_text(errors="replace")
    assert rc == 0, output[-4000:]
    figures(
        f"MLflow server gone {back - killed:.0f} s (SIGKILLed, restarted after {OUTAGE_S:.0f} s); "
        f"study wall {time.monotonic() - started:.0f} s"
    )

    (experiment_dir,) = experiment_dirs(tmp_path, "outage")
    rows = trial_rows(experiment_dir)
    assert len(rows) == trials
    straddling = [t for t, r in rows.items() if r[0]["timestamp"] < killed < r[-1]["timestamp"]]
    assert straddling, "no trial was running through the outage"  # the test tested something
    client, parents, children = mlflow_runs(server.uri, "outage")
    assert [p.info.status for p in parents] == [parent_run.FINISHED]
    assert sorted(c.data.tags["trial_id"] for c in children) == sorted(rows)  # one per trial
    for child in children:
        assert child.info.status == parent_run.FINISHED, child.data.tags["trial_id"]
        assert _epochs(client, child.info.run_id) == list(range(epochs + 1)), child.info.run_id
        psnr = client.get_metric_history(child.info.run_id, names.VAL_PSNR)
        assert sorted(m.step for m in psnr) == list(range(epochs + 1))


def _outage_once_a_trial_reported(driver, tmp_path, server) -> tuple[float, float]:
    """Once a trial has reported epoch 1: SIGKILL the server, start it again OUTAGE_S later.
    Returns (killed, back) as Unix times."""
    deadline = time.monotonic() + 300
    while True:
        assert driver.poll() is None, f"study ended (exit {driver.returncode}) before the outage"
        dirs = experiment_dirs(tmp_path, "outage")
        reported = trial_rows(dirs[0]) if dirs else {}
        if any(r[-1][names.EPOCH] >= 1 for r in reported.values()):
            break
        assert time.monotonic() < deadline, "no trial reported epoch 1 in time"
        time.sleep(0.2)
    server.kill()
    killed = time.time()
    time.sleep(OUTAGE_S)  # the outage itself: a measured duration, not a wait for a condition
    assert driver.poll() is None, "the study ended while the tracking server was down"
    server.start()
    return killed, time.time()
