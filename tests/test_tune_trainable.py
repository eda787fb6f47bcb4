"""trainable.log_each_epoch_once: a restarted trial's MLflow child run holds every epoch once,
whatever the dead worker had logged (a real MlflowTracker on a SQLite store)."""

from __future__ import annotations

from ttsr import names
from ttsr.tracking import MlflowTracker
from tune.trainable import log_each_epoch_once


def _metrics(epoch: int) -> dict:
    return {names.EPOCH: epoch, names.VAL_PSNR: 20.0 + epoch, names.STOP_REASON: "x"}


def _steps(tracker: MlflowTracker, key: str) -> list[int]:
    return sorted(m.step for m in tracker.client.get_metric_history(tracker.run_id, key))


def test_restart_backfills_missing_epochs_and_skips_logged_ones(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    first = MlflowTracker(tracking_uri=uri, experiment="e")
    # The dead worker logged epochs 1 and 3; epoch 2's log was lost, but Tune has its
    # checkpoint (history 1, 2): the restart resumes after epoch 2 and runs 3 and 4 again.
    for epoch in (1, 3):
        first.log_metrics(_metrics(epoch), step=epoch)
    first.end("KILLED")

    again = MlflowTracker(tracking_uri=uri, experiment="e", run_id=first.run_id)
    with log_each_epoch_once(again, history=[_metrics(1), _metrics(2)]) as once:
        for epoch in (3, 4):  # what the resumed loop logs
            once.log_metrics(_metrics(epoch), step=epoch)
        assert once.run_id == first.run_id  # everything else goes to the tracker
    for key in (names.EPOCH, names.VAL_PSNR):
        assert _steps(again, key) == [1, 2, 3, 4]
    assert again.client.get_run(first.run_id).info.status == "FINISHED"


def test_a_new_run_logs_everything(tmp_path):
    tracker = MlflowTracker(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db", experiment="e")
    with log_each_epoch_once(tracker, history=[]) as once:
        for epoch in (1, 2):
            once.log_metrics(_metrics(epoch), step=epoch)
            once.log_metrics(_metrics(epoch), step=epoch)  # a second log of an epoch: dropped
    assert _steps(tracker, names.EPOCH) == [1, 2]
