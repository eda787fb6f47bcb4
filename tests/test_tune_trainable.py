"""A restarted trial's (or a resumed CLI run's) MLflow run holds every epoch once, whatever the
dead process had logged: `ttsr.tracking.MlflowCallback` against a real MlflowTracker on a
SQLite store."""

from __future__ import annotations

from pathlib import Path

from ttsr import names
from ttsr.config import TrainConfig
from ttsr.tracking import MlflowCallback, MlflowTracker
from ttsr.train import RunInfo


def _metrics(epoch: int) -> dict:
    return {names.EPOCH: epoch, names.VAL_PSNR: 20.0 + epoch, names.STOP_REASON: "x"}


def _steps(tracker: MlflowTracker, key: str) -> list[int]:
    return sorted(m.step for m in tracker.client.get_metric_history(tracker.run_id, key))


def _info(history, tmp_path) -> RunInfo:
    return RunInfo(
        config=TrainConfig(),
        tags={},
        resumed=bool(history),
        start_epoch=len(history),
        out_dir=Path(tmp_path),
        train_items=1,
        val_items=1,
        total_steps=1,
        history=tuple(history),
    )


def test_restart_backfills_missing_epochs_and_skips_logged_ones(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    first = MlflowTracker(tracking_uri=uri, experiment="e")
    # The dead worker logged epochs 1 and 3; epoch 2's log was lost, but Tune has its
    # checkpoint (history 1, 2): the restart resumes after epoch 2 and runs 3 and 4 again.
    for epoch in (1, 3):
        first.log_metrics(_metrics(epoch), step=epoch)
    first.end("KILLED")

    again = MlflowTracker(tracking_uri=uri, experiment="e", run_id=first.run_id)
    with again:
        callback = MlflowCallback(again)
        callback.on_train_start(_info([_metrics(1), _metrics(2)], tmp_path))
        for epoch in (3, 4):  # what the resumed loop logs
            callback.on_epoch_end(_metrics(epoch), Path(tmp_path), {})
    for key in (names.EPOCH, names.VAL_PSNR):
        assert _steps(again, key) == [1, 2, 3, 4]
    assert again.client.get_run(first.run_id).info.status == "FINISHED"


def test_a_new_run_logs_everything_once(tmp_path):
    tracker = MlflowTracker(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db", experiment="e")
    with tracker:
        callback = MlflowCallback(tracker)
        callback.on_train_start(_info([], tmp_path))
        for epoch in (0, 1, 2):
            callback.on_epoch_end(_metrics(epoch), Path(tmp_path), {})
            callback.on_epoch_end(_metrics(epoch), Path(tmp_path), {})  # again: dropped
    assert _steps(tracker, names.EPOCH) == [0, 1, 2]
