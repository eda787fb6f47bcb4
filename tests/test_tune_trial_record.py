"""trial_record: Tune's result.json / progress.csv keep every epoch exactly once when a trial's
worker dies and the trial restarts from its checkpoint.

The slow test runs real Tune (local Ray, in a subprocess) with a function trainable whose
worker process exits the way a lost node takes it: right after Tune took a result.
"""

from __future__ import annotations

import csv
import json
import signal
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from cluster import procs

from tune.execution import trial_record, tuner

REPO = Path(__file__).resolve().parents[1]


def _json_rows(epochs_and_checkpoints: list[tuple[int, str | None]]) -> str:
    return "".join(
        json.dumps({"epoch": e, "checkpoint_dir_name": c}) + "\n" for e, c in epochs_and_checkpoints
    )


def test_keep_through_the_resumed_checkpoint():
    names = ["checkpoint_000000", None, "checkpoint_000001", "checkpoint_000002"]
    rows = [1, 2, 3, 4]
    assert trial_record.keep_through(rows, names, "checkpoint_000001") == 3
    assert trial_record.keep_through(rows, names, "checkpoint_000002") == 4
    assert trial_record.keep_through(rows, names, None) == 0  # starts over: all reported again
    assert trial_record.keep_through(rows, names, "checkpoint_000009") == 4  # unknown: keep all


def test_trim_json_and_csv(tmp_path):
    path = tmp_path / "result.json"
    path.write_text(_json_rows([(1, "checkpoint_000000"), (2, "checkpoint_000001"), (3, None)]))
    assert trial_record.trim_json(path, "checkpoint_000000") == 2
    assert [json.loads(line)["epoch"] for line in path.read_text().splitlines()] == [1]
    assert trial_record.trim_json(path, "checkpoint_000000") == 0

    path = tmp_path / "progress.csv"
    path.write_text(
        'epoch,checkpoint_dir_name,note\n1,checkpoint_000000,"a, b"\n2,checkpoint_000001,x\n'
    )
    assert trial_record.trim_csv(path, "checkpoint_000000") == 1
    rows = list(csv.DictReader(path.open()))
    assert [r["epoch"] for r in rows] == ["1"] and rows[0]["note"] == "a, b"
    path.write_text("no,such,column\n1,2,3\n")
    assert trial_record.trim_csv(path, None) == 0  # not a record we know: untouched


def test_the_study_run_config_uses_the_record_callbacks():
    study = SimpleNamespace(search={}, cases=(), config={})  # what run_config reads of a Study
    config = tuner.run_config(study, storage="/tmp/unused", name="x")
    kinds = {type(c) for c in config.callbacks}
    assert {trial_record.JsonRecord, trial_record.CsvRecord} <= kinds


# One trainable, two cases. "lost": after epoch 1 it waits until the driver has synced its
# result.json to storage, reports epoch 2 with a checkpoint, and its process exits; the trial
# restarts from epoch 2's checkpoint before the next sync (TUNE_GLOBAL_CHECKPOINT_S), so Tune's
# own logger would restore result.json as [1] and the record would read 1, 3, 4. "repeated": it
# reports epoch 2 without a checkpoint and exits; the trial restarts from epoch 1's checkpoint
# and reports epoch 2 again, which would be a second row.
DRIVER = """
import os, sys, tempfile, time
from pathlib import Path
import ray
from ray import tune
from tune.execution import trial_record

storage, temp = sys.argv[1], sys.argv[2]
EPOCHS = 4


def synced(trial_id, epoch):
    path = Path(storage, "record", f"trial_{trial_id}", "result.json")
    return path.exists() and f'"epoch": {epoch},' in path.read_text()


def trainable(config):
    start, ckpt = 0, tune.get_checkpoint()
    if ckpt is not None:
        with ckpt.as_directory() as d:
            start = int(Path(d, "epoch").read_text())
    trial_id = tune.get_context().get_trial_id()
    for epoch in range(start + 1, EPOCHS + 1):
        first_run_epoch_2 = start == 0 and epoch == 2
        if config["case"] == "repeated" and first_run_epoch_2:
            tune.report({"epoch": epoch, "pid": os.getpid()})
            os._exit(1)
        d = tempfile.mkdtemp()
        Path(d, "epoch").write_text(str(epoch))
        checkpoint = tune.Checkpoint.from_directory(d)
        tune.report({"epoch": epoch, "pid": os.getpid()}, checkpoint=checkpoint)
        if config["case"] == "lost" and start == 0 and epoch == 1:
            deadline = time.monotonic() + 120
            while not synced(trial_id, 1) and time.monotonic() < deadline:
                time.sleep(0.05)
        if config["case"] == "lost" and first_run_epoch_2:
            os._exit(1)


ray.init(num_cpus=2, include_dashboard=False, _temp_dir=temp, object_store_memory=80_000_000)
tune.Tuner(
    tune.with_resources(trainable, {"cpu": 1}),
    param_space={"case": tune.grid_search(["lost", "repeated"])},
    tune_config=tune.TuneConfig(trial_dirname_creator=lambda t: f"trial_{t.trial_id}"),
    run_config=tune.RunConfig(
        name="record",
        storage_path=storage,
        failure_config=tune.FailureConfig(max_failures=2),
        callbacks=[trial_record.JsonRecord(), trial_record.CsvRecord()],
        verbose=0,
    ),
).fit()
ray.shutdown()
"""


@pytest.mark.slow
def test_restarted_trials_keep_every_epoch_once(tmp_path):
    temp = procs.short_tmpdir("rt")
    env = {
        "PYTHONPATH": str(REPO),
        "TUNE_GLOBAL_CHECKPOINT_S": "20",  # the storage copy lags by up to 20 s
        "RAY_USAGE_STATS_ENABLED": "0",
        "RAY_AUTH_MODE": "disabled",
        "RAY_worker_niceness": "0",
    }
    driver = procs.start(
        "driver",
        [sys.executable, "-c", DRIVER, str(tmp_path / "results"), str(temp)],
        log_dir=tmp_path,
        env=env,
        unset=("RAY_ADDRESS",),
        marker=str(temp),
    )
    try:
        returncode = driver.popen.wait(timeout=400)
    except subprocess.TimeoutExpired:
        returncode = None
    finally:
        left = driver.stop(grace=5.0)
        procs.signal_pids(procs.pids_naming(str(temp)), signal.SIGKILL)
    assert returncode == 0, driver.log_tail(60)
    assert not left
    trials = sorted((tmp_path / "results" / "record").glob("trial_*"))
    assert len(trials) == 2
    for trial in trials:
        rows = [json.loads(line) for line in (trial / "result.json").read_text().splitlines()]
        assert [r["epoch"] for r in rows] == [1, 2, 3, 4], (rows[0]["config"], rows)
        assert rows[0]["pid"] != rows[-1]["pid"]  # it did die and restart
        assert (trial / "error.txt").is_file()
        with (trial / "progress.csv").open() as f:
            assert [int(r["epoch"]) for r in csv.DictReader(f)] == [1, 2, 3, 4]
