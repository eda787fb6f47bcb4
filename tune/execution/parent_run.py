"""The MLflow side of a study: one parent run per study invocation, child runs per trial.

Trials make their own child runs with ``ttsr.tracking.MlflowTracker`` (remote workers log
straight to an HTTP tracking server); ``find_child`` lets a restarted trial reattach to its run
instead of making a duplicate. Every call goes through ``MlflowClient`` with an explicit
tracking URI: no global active run, so the driver, trials and tests cannot step on each other.
"""

from __future__ import annotations

import json
import signal
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mlflow.entities import RunStatus
from mlflow.tracking import MlflowClient

from ttsr import names
from ttsr.tracking import PARENT_RUN_TAG as PARENT_TAG
from ttsr.tracking import get_or_create_experiment, param_text, ui_url
from tune.execution.storage import MLFLOW_RUN_KEY as MLFLOW_RUN_KEY  # noqa: F401 - trials, tests
from tune.study.studies import Study

TRIAL_ID_TAG = "trial_id"
# What a run is, for the MLflow UI's filters and "Group by": role is study (the parent),
# warm-start or trial; config names a trial's configuration (equal across its seeds).
ROLE_TAG = "role"
ROLE_STUDY, ROLE_WARM_START, ROLE_TRIAL = "study", "warm-start", "trial"
CONFIG_TAG = "config"
VIEW_TAG_PREFIX = "mlflow.sharedViewState."  # the MLflow UI's saved (shared) runs-table views

FINISHED = RunStatus.to_string(RunStatus.FINISHED)
FAILED = RunStatus.to_string(RunStatus.FAILED)
KILLED = RunStatus.to_string(RunStatus.KILLED)
RUNNING = RunStatus.to_string(RunStatus.RUNNING)


class Interrupted(KeyboardInterrupt):
    """SIGTERM to the driver: unwinds like Ctrl+C, so the parent run ends KILLED."""


class ParentRun:
    """The parent run of one study invocation; use ``with ParentRun.start(...)`` or
    ``with ParentRun.reopen(info)``.

    Inside the block SIGTERM raises `Interrupted`, and ``finish(trial_status)`` records how the
    trials ended. Leaving the block closes the child runs still RUNNING and ends the run with
    that status (FINISHED when ``finish`` was not called), KILLED on KeyboardInterrupt or
    SIGTERM, FAILED on any other exception: no run stays RUNNING.
    """

    def __init__(self, tracking_uri: str, *, experiment_id: str, run_id: str, info: dict) -> None:
        self.tracking_uri = tracking_uri
        self.experiment_id = experiment_id
        self.run_id = run_id
        self.info = info  # what mlflow_parent.json holds (lets --resume find this run again)
        self.status = FINISHED
        self._previous_sigterm: Any = None

    @classmethod
    def start(
        cls, tracking_uri: str, study: Study, *, run_name: str, tags: dict, overrides: Mapping
    ) -> ParentRun:
        """A new parent run in the experiment named after the study, with the study's params
        and its `comparison_view` saved on the experiment."""
        client = MlflowClient(tracking_uri)
        experiment_id = get_or_create_experiment(client, study.name)
        tags = {"study": study.name, "profile": study.profile, ROLE_TAG: ROLE_STUDY, **tags}
        run_id = client.create_run(experiment_id, run_name=run_name, tags=tags).info.run_id
        for key, value in sorted(study_params(study, overrides).items()):
            client.log_param(run_id, key, param_text(value))
        view = json.dumps(comparison_view(study, run_id))
        client.set_experiment_tag(experiment_id, VIEW_TAG_PREFIX + run_id, view)
        info = {
            "run_id": run_id,
            "experiment_id": experiment_id,
            "tracking_uri": tracking_uri,
            "profile": study.profile,
            "data": study.data,
            "run_name": run_name,
        }
        return cls(tracking_uri, experiment_id=experiment_id, run_id=run_id, info=info)

    @classmethod
    def reopen(cls, info: dict) -> ParentRun:
        """The parent run in a resumed invocation's mlflow_parent.json, RUNNING again."""
        uri = info["tracking_uri"]
        MlflowClient(uri).update_run(info["run_id"], status=RUNNING)
        return cls(uri, experiment_id=info["experiment_id"], run_id=info["run_id"], info=info)

    def trial_meta(self, study: Study) -> dict[str, Any]:
        """What each trial needs to make and name its child run (via tune.with_parameters)."""
        return {
            "study": study.name,
            "tracking_uri": self.tracking_uri,
            "experiment_id": self.experiment_id,
            "parent_run_id": self.run_id,
            "varied": list(study.varied_keys),
            "repeats": study.repeats,
        }

    def finish(self, trial_status: dict[str, str]) -> str:
        """Close each child run as its trial ended; the parent's status from the trials: KILLED
        when some are unfinished (interrupted), FAILED when all errored, else FINISHED."""
        close_children(self.tracking_uri, self.experiment_id, self.run_id, trial_status)
        states = list(trial_status.values())
        if any(s not in ("TERMINATED", "ERROR") for s in states):
            self.status = KILLED
        elif states and all(s == "ERROR" for s in states):
            self.status = FAILED
        else:
            self.status = FINISHED
        return self.status

    def __enter__(self) -> ParentRun:
        self._previous_sigterm = signal.signal(signal.SIGTERM, _raise_interrupted)
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        signal.signal(signal.SIGTERM, self._previous_sigterm)
        if exc_type is not None:
            self.status = KILLED if issubclass(exc_type, KeyboardInterrupt) else FAILED
        try:
            close_children(self.tracking_uri, self.experiment_id, self.run_id, {})  # RUNNING ones
        finally:
            MlflowClient(self.tracking_uri).set_terminated(self.run_id, status=self.status)


def _raise_interrupted(signum: int, frame: Any) -> None:
    raise Interrupted(f"signal {signum}")


def comparison_view(study: Study, parent_run_id: str) -> dict[str, Any]:
    """The runs-table view a study opens on in the MLflow UI: this invocation's trials only,
    grouped by configuration (the ``config`` tag; the UI shows each group's mean and its seeds
    inside), the swept params and the objectives at the kept epoch as the first columns, best
    first. The UI reads it from an experiment tag (``mlflow.sharedViewState.<key>``, what its
    own Share button writes) when the link carries ``viewStateShareKey=<key>``."""

    def column(kind: str, key: str) -> str:
        return f"{kind}.`{key}`"

    objectives = [o.metric for o in study.objectives]
    metrics = [names.kept_value(m) for m in objectives]
    params = [*study.varied_keys, *(["seed"] if study.repeats > 1 else [])]
    return {
        "searchFilter": (
            f"tags.`{PARENT_TAG}` = '{parent_run_id}' and tags.`{ROLE_TAG}` = '{ROLE_TRIAL}'"
        ),
        "orderByKey": column("metrics", metrics[0]),
        "orderByAsc": study.objectives[0].mode == "min",
        "startTime": "ALL",
        "lifecycleFilter": "Active",
        "modelVersionFilter": "All Runs",
        "datasetsFilter": [],
        "selectedColumns": [
            column("tags", CONFIG_TAG),
            *(column("params", k) for k in params),
            *(column("metrics", m) for m in dict.fromkeys([*metrics, names.BEST_EPOCH])),
            column("tags", names.STOP_REASON),
        ],
        "groupBy": {
            "aggregateFunction": "average",
            "groupByKeys": [{"mode": "tag", "groupByData": CONFIG_TAG}],
        },
        "groupsExpanded": {},
        "useGroupedValuesInCharts": True,
        "runListHidden": False,
        "viewMaximized": False,
        "hideEmptyCharts": True,
    }


def comparison_url(tracking_uri: str, experiment_id: str, parent_run_id: str) -> str:
    """The MLflow UI link to a study invocation's `comparison_view` (its share key is the parent
    run id); for a local store, where ``mlflow ui`` serves it by default."""
    local = not tracking_uri.startswith(("http://", "https://"))
    base = "http://127.0.0.1:5000" if local else tracking_uri
    return ui_url(base, experiment_id, view=parent_run_id)


def study_params(study: Study, overrides: Mapping[str, Any]) -> dict[str, Any]:
    """The parent run's params: the fixed config, what varies, and every ``--set`` override."""
    params: dict[str, Any] = {f"config.{k}": v for k, v in sorted(study.config.items())}
    params.update(
        {
            "num_samples": study.num_samples,
            "repeats": study.repeats,
            "search": {k: list(d.values) for k, d in study.search.items()} or None,
            "cases": list(study.cases) or None,
            "scheduler": study.scheduler,
            "objectives": [f"{o.metric}:{o.mode}" for o in study.objectives],
            "report": study.report_kind,
        }
    )
    params.update({f"set.{k}": v for k, v in sorted(overrides.items())})
    return params


def find_child(tracking_uri: str, experiment: str, parent_run_id: str, trial_id: str) -> str | None:
    """The child run a trial made earlier (before a crash or a driver restart), if any."""
    runs = MlflowClient(tracking_uri).search_runs(
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
    """Make each child run's status match its trial's Tune status (``trial_status``: trial id
    -> status): TERMINATED -> FINISHED (also for trials a scheduler stopped, which marked their
    run KILLED), ERROR -> FAILED, anything else (the study was interrupted) -> KILLED. A child
    whose trial is unknown is only closed (KILLED) if still RUNNING. Returns how many changed.
    """
    changed = 0
    client = MlflowClient(tracking_uri)
    children = client.search_runs(
        [experiment], filter_string=f"tags.`{PARENT_TAG}` = '{parent_run_id}'", max_results=10000
    )
    for run in children:
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
        client.set_tag(run_id, f"best.{key}", param_text(value))
    for key, value in sorted(metrics.items()):
        client.log_metric(run_id, f"best_{key}", float(value))
    for path in artifacts:
        client.log_artifact(run_id, str(path), artifact_path="report")
