"""The MLflow side of a study: one parent run per study invocation, child runs per trial.

The driver owns the parent run (created here, never left RUNNING: finished, failed or killed
on every exit path). Trials create their own child runs with ``ttsr.tracking.MlflowTracker``
(so remote workers log straight to an HTTP tracking server); ``find_child`` lets a restarted
trial reattach to the run it had instead of making a duplicate.

All calls go through ``MlflowClient`` with an explicit tracking URI: no global active run, so
the driver, trials and tests cannot step on each other's state.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mlflow.entities import RunStatus
from mlflow.tracking import MlflowClient

PARENT_FILE = "mlflow_parent.json"  # in the study's Tune experiment directory
TRIAL_ID_TAG = "trial_id"
MLFLOW_RUN_KEY = "mlflow_run_id"  # reported by each trial, so results point at its child run
PARENT_TAG = "mlflow.parentRunId"  # MLflow's own nesting tag (the UI groups children by it)

FINISHED = RunStatus.to_string(RunStatus.FINISHED)
FAILED = RunStatus.to_string(RunStatus.FAILED)
KILLED = RunStatus.to_string(RunStatus.KILLED)
RUNNING = RunStatus.to_string(RunStatus.RUNNING)


def experiment_id(client: MlflowClient, name: str) -> str:
    """Get or create the experiment named after the study."""
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        if exp.lifecycle_stage == "deleted":
            client.restore_experiment(exp.experiment_id)
        return exp.experiment_id
    try:
        return client.create_experiment(name)
    except Exception:  # noqa: BLE001 - another process created it in between
        return client.get_experiment_by_name(name).experiment_id


def start_parent(
    tracking_uri: str,
    *,
    study: str,
    run_name: str,
    tags: dict[str, str],
    params: dict[str, Any],
) -> tuple[str, str]:
    """Create the parent run; returns (experiment_id, run_id)."""
    client = MlflowClient(tracking_uri)
    exp_id = experiment_id(client, study)
    run = client.create_run(exp_id, run_name=run_name, tags=tags)
    for key, value in sorted(params.items()):
        client.log_param(run.info.run_id, key, _param_text(value))
    return exp_id, run.info.run_id


def reopen(tracking_uri: str, run_id: str) -> None:
    """A resumed study sets its parent back to RUNNING until it ends again."""
    MlflowClient(tracking_uri).update_run(run_id, status=RUNNING)


def end(tracking_uri: str, run_id: str, status: str) -> None:
    MlflowClient(tracking_uri).set_terminated(run_id, status=status)


def children(tracking_uri: str, experiment: str, parent_run_id: str) -> list:
    client = MlflowClient(tracking_uri)
    return client.search_runs(
        [experiment], filter_string=f"tags.`{PARENT_TAG}` = '{parent_run_id}'", max_results=10000
    )


def find_child(tracking_uri: str, experiment: str, parent_run_id: str, trial_id: str) -> str | None:
    """The child run a trial made earlier (before a crash or a driver restart), if any."""
    client = MlflowClient(tracking_uri)
    runs = client.search_runs(
        [experiment],
        filter_string=(
            f"tags.`{PARENT_TAG}` = '{parent_run_id}' and tags.`{TRIAL_ID_TAG}` = '{trial_id}'"
        ),
        order_by=["attributes.start_time ASC"],
        max_results=10,
    )
    return runs[0].info.run_id if runs else None


def close_children(
    tracking_uri: str, experiment: str, parent_run_id: str, trial_status: dict[str, str]
) -> int:
    """After the Tuner returns, make each child run's status match its trial.

    ``trial_status`` maps Tune trial id -> Tune status. TERMINATED -> FINISHED (also for trials
    a scheduler stopped: the trial marked its run KILLED when Tune stopped it), ERROR -> FAILED,
    anything else (PENDING/PAUSED/RUNNING: the study was interrupted) -> KILLED. A child whose
    trial is unknown is only closed (KILLED) if still RUNNING. Returns how many runs changed.
    """
    changed = 0
    client = MlflowClient(tracking_uri)
    for run in children(tracking_uri, experiment, parent_run_id):
        tune_status = trial_status.get(run.data.tags.get(TRIAL_ID_TAG, ""))
        if tune_status is None:
            wanted = KILLED if run.info.status == RUNNING else run.info.status
        else:
            wanted = {"TERMINATED": FINISHED, "ERROR": FAILED}.get(tune_status, KILLED)
        if run.info.status != wanted:
            client.set_terminated(run.info.run_id, status=wanted)
            changed += 1
    return changed


def log_summary(
    tracking_uri: str,
    run_id: str,
    *,
    params: dict[str, Any],
    metrics: dict[str, float],
    artifacts: list[Path],
) -> None:
    """The study's outcome on the parent run: best trial's params/metrics and report files."""
    client = MlflowClient(tracking_uri)
    for key, value in sorted(params.items()):
        client.set_tag(run_id, f"best.{key}", _param_text(value))
    for key, value in sorted(metrics.items()):
        client.log_metric(run_id, f"best_{key}", float(value))
    for path in artifacts:
        client.log_artifact(run_id, str(path), artifact_path="report")


def _param_text(value: Any) -> str:
    text = str(value)
    return text if len(text) <= 6000 else text[:5997] + "..."
